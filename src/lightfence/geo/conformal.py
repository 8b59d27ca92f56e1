"""The verdict engine's sphere: WGS84 mapped conformally onto the unit sphere, with exact bounds.

Every point the engine reasons about (landmarks, border vertices, witnesses) is mapped by
longitude and *conformal* latitude chi(phi) onto the unit sphere. A conformal map scales every
direction at a point by the same factor g(phi) (radians of sphere per km of ellipsoid), and g
varies only with latitude, slowly: from 1/6378.137 at the equator to 1/6356.800 at the poles
(`scale_rad_per_km`). So a WGS84 geodesic of length s km, whose points all lie at latitudes where
g <= G, maps to a curve of at most G * s radians, and the great-circle angle between its ends is
no longer than that curve. That is the cap bound (`reach_rad`): exact, with no flat margin, and
within 0.03 % of the true image for a cap of 300 km at 30 degrees. Mapping geodetic latitude
straight onto the sphere instead stretches east-west distances against north-south ones by up to
0.56 %, which a flat growth had to cover everywhere.

Two facts about latitude make it work: g grows with |phi| (1/g falls from 6378.137 km at the
equator to 6356.800 km at the poles; tests/test_conformal.py checks it), and a path of length s
changes geodetic latitude by at most s / M_EQUATOR_KM (the smallest meridional radius of
curvature). The inverse map (`model_lat_lon`) solves for geodetic latitude
by Newton's method to rounding error.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from lightfence.geo.sphere import Float64Array

WGS84_A_KM = 6378.137
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)
WGS84_E = math.sqrt(WGS84_E2)

M_EQUATOR_KM = WGS84_A_KM * (1.0 - WGS84_E2)
"""The smallest meridional radius of curvature (at the equator): a path of s km changes geodetic
latitude by at most s / M_EQUATOR_KM radians."""

POLE_INVERSE_SCALE_KM: float = (
    WGS84_A_KM / math.sqrt(1.0 - WGS84_E2) * ((1.0 - WGS84_E) / (1.0 + WGS84_E)) ** (WGS84_E / 2.0)
)
"""1 / g at the poles, where g is largest: km of ellipsoid per radian of model sphere."""

G_MAX_RAD_PER_KM: float = 1.0 / POLE_INVERSE_SCALE_KM * (1.0 + 1e-12)
"""An upper bound on g everywhere: turns any small km margin into a safe angle."""

G_MIN_RAD_PER_KM = 1.0 / WGS84_A_KM * (1.0 - 1e-12)
"""A lower bound on g everywhere (g is smallest at the equator)."""

SCALE_ROUNDING = 1e-10
"""Relative slack on every g: covers rounding in the formulas below (seen up to 1e-12 near the
poles)."""


def _psi(lat_rad: Float64Array) -> Float64Array:
    """Isometric latitude of the ellipsoid: asinh(tan phi) - e atanh(e sin phi)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(
            np.arcsinh(np.tan(lat_rad)) - WGS84_E * np.arctanh(WGS84_E * np.sin(lat_rad)),
            dtype=np.float64,
        )


def conformal_lat_rad(lat_deg: ArrayLike) -> Float64Array:
    """Conformal latitude chi (radians) of geodetic latitude phi (degrees)."""
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    psi = _psi(lat)
    chi = np.arctan(np.sinh(psi))
    # tan(pi/2) is finite in floating point, so the poles map to within 1e-16 of the poles:
    # pin them exactly.
    return np.asarray(np.where(np.abs(lat) >= np.pi / 2, lat, chi), dtype=np.float64)


def geodetic_lat_deg(chi_rad: ArrayLike) -> Float64Array:
    """Geodetic latitude (degrees) of conformal latitude chi (radians): Newton on tan(phi)
    (Karney 2011, eq. 7-9); converges to rounding error in 3 steps, 5 are taken."""
    chi = np.asarray(chi_rad, dtype=np.float64)
    tau_p = np.tan(chi)
    e2m = 1.0 - WGS84_E2
    tau = tau_p / e2m
    for _ in range(5):
        tau1 = np.hypot(1.0, tau)
        sig = np.sinh(WGS84_E * np.arctanh(WGS84_E * tau / tau1))
        taup_i = np.hypot(1.0, sig) * tau - sig * tau1
        dtau = (tau_p - taup_i) * (1.0 + e2m * tau * tau) / (e2m * tau1 * np.hypot(1.0, taup_i))
        tau = tau + dtau
    lat = np.degrees(np.arctan(tau))
    return np.asarray(np.where(np.abs(chi) >= np.pi / 2, np.degrees(chi), lat), dtype=np.float64)


def model_vectors(lat_deg: ArrayLike, lon_deg: ArrayLike) -> Float64Array:
    """Unit vectors (..., 3) on the model sphere for geodetic coordinates in degrees."""
    chi = conformal_lat_rad(lat_deg)
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    cos_chi = np.cos(chi)
    return np.stack([cos_chi * np.cos(lon), cos_chi * np.sin(lon), np.sin(chi)], axis=-1)


def model_lat_lon(vectors: ArrayLike) -> tuple[Float64Array, Float64Array]:
    """Geodetic latitude and longitude (degrees, lon in [-180, 180]) of model vectors (..., 3)."""
    v = np.asarray(vectors, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    chi = np.arctan2(z, np.hypot(x, y))
    return geodetic_lat_deg(chi), np.asarray(np.degrees(np.arctan2(y, x)), dtype=np.float64)


def scale_rad_per_km(lat_deg: ArrayLike) -> Float64Array:
    """g(phi): radians of model sphere per km of ellipsoid, in every direction, at a latitude."""
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    chi = conformal_lat_rad(np.degrees(lat))
    n_km = WGS84_A_KM / np.sqrt(1.0 - WGS84_E2 * np.sin(lat) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.cos(chi) / (n_km * np.cos(lat))
    return np.asarray(np.where(np.abs(lat) >= np.pi / 2 - 1e-9, 1.0 / POLE_INVERSE_SCALE_KM, g))


SCALE_TABLE_STEP_DEG = 0.001
"""Spacing of the table of g that `reach_rad` reads: g is taken at the next table latitude up,
where it is larger (g grows with |phi|), so the table only ever rounds a cap up, by under 2e-9
of its radius."""

_SCALE_TABLE = scale_rad_per_km(
    np.arange(0.0, 90.0 + SCALE_TABLE_STEP_DEG / 2, SCALE_TABLE_STEP_DEG)
)


def reach_rad(lat_deg: ArrayLike, distance_km: ArrayLike) -> Float64Array:
    """An upper bound on the model-sphere angle from a point at `lat_deg` to any point within
    `distance_km` of it along the WGS84 ellipsoid (a geodesic or any other path).

    The path stays within s / M_EQUATOR_KM of the start's latitude, where g is at most its value
    at the largest |latitude| of that band (g grows towards the poles), so the angle is at most
    that g times s. Capped at pi.
    """
    lat = np.abs(np.asarray(lat_deg, dtype=np.float64))
    dist = np.maximum(np.asarray(distance_km, dtype=np.float64), 0.0)
    far_lat = np.minimum(lat + np.degrees(dist / M_EQUATOR_KM), 90.0)
    slot = np.minimum(np.ceil(far_lat / SCALE_TABLE_STEP_DEG), len(_SCALE_TABLE) - 1)
    g = _SCALE_TABLE[slot.astype(np.intp)] * (1.0 + SCALE_ROUNDING)
    return np.asarray(np.minimum(dist * g, np.pi), dtype=np.float64)


def inner_reach_rad(lat_deg: float, distance_km: float) -> float:
    """An angle rho such that every point within rho of the point at `lat_deg` on the model
    sphere is within `distance_km` of it on the ellipsoid: shrinks a licensed disc, never grows
    it.

    A great-circle arc of angle rho from the centre stays within rho of its conformal latitude,
    and the ellipsoid length of its preimage is at most rho / (least g on that band); g is least
    at the band's smallest |latitude|. The band is taken for the largest rho that could come out
    (distance * G_MAX_RAD_PER_KM), so the g found holds for the rho chosen.
    """
    if distance_km <= 0.0:
        return 0.0
    chi0 = abs(float(conformal_lat_rad(lat_deg)))
    rho_upper = distance_km * G_MAX_RAD_PER_KM
    near_lat = float(geodetic_lat_deg(max(chi0 - rho_upper, 0.0)))
    g_low = float(scale_rad_per_km(near_lat)) * (1.0 - SCALE_ROUNDING)
    return min(distance_km * g_low, math.pi)
