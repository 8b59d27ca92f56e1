"""Points, distances and angles on a sphere with geodetic latitude: vector helpers and rough km.

`great_circle_km` puts geodetic latitude on a sphere of radius EARTH_MEAN_RADIUS_KM: good for
estimates, simulation and display, off from the WGS84 geodesic by up to ELLIPSOID_EXCESS in
either direction. The verdict engine does not use it: its sphere is the conformal one of
geo.conformal, with exact bounds. `geodesic_km` gives the exact ellipsoidal figure
(GeographicLib, accurate to 15 nm) for checks and references.
"""

from __future__ import annotations

import math

import numpy as np
from geographiclib.geodesic import Geodesic
from numpy.typing import ArrayLike, NDArray

from lightfence.units import EARTH_MEAN_RADIUS_KM

ELLIPSOID_EXCESS = 0.0075
"""Bound on |great_circle_km / geodesic_km - 1| over all pairs.

The sphere overstates short north-south distances near the equator (ratio up to 1.00561, where
the meridional radius of curvature is smallest, 6335.4 km) and understates east-west ones near
the poles (down to 0.9955); 0.75 % keeps a margin. tests/test_sphere.py checks it against
GeographicLib, near the poles and across the antimeridian too.
"""

Float64Array = NDArray[np.float64]


def check_lat_lon(lat_deg: ArrayLike, lon_deg: ArrayLike) -> None:
    """Raise ValueError unless every latitude is in [-90, 90] and longitude in [-180, 360]."""
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    if not np.all(np.isfinite(lat)) or not np.all(np.isfinite(lon)):
        raise ValueError("latitude and longitude must be finite numbers")
    if np.any(np.abs(lat) > 90.0):
        raise ValueError(f"latitude out of range [-90, 90]: {lat[np.abs(lat) > 90.0][:3]}")
    if np.any(lon < -180.0) or np.any(lon > 360.0):
        raise ValueError("longitude out of range [-180, 360]")


def unit_vectors(lat_deg: ArrayLike, lon_deg: ArrayLike) -> Float64Array:
    """Unit vectors (..., 3) on the sphere for geodetic coordinates in degrees."""
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    cos_lat = np.cos(lat)
    return np.stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)], axis=-1)


def lat_lon(vectors: ArrayLike) -> tuple[Float64Array, Float64Array]:
    """Geodetic latitude and longitude (degrees, lon in [-180, 180]) of vectors (..., 3)."""
    v = np.asarray(vectors, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x))
    return lat, lon


def angle_rad(a: ArrayLike, b: ArrayLike) -> Float64Array:
    """Central angle between unit vectors, stable for tiny and near-antipodal angles."""
    va = np.asarray(a, dtype=np.float64)
    vb = np.asarray(b, dtype=np.float64)
    cross = np.linalg.norm(np.cross(va, vb), axis=-1)
    dot = np.sum(va * vb, axis=-1)
    return np.asarray(np.arctan2(cross, dot), dtype=np.float64)


def great_circle_km(
    lat1_deg: ArrayLike, lon1_deg: ArrayLike, lat2_deg: ArrayLike, lon2_deg: ArrayLike
) -> Float64Array:
    """Great-circle distance with geodetic latitude on the sphere, in km (error vs. WGS84: see
    ELLIPSOID_EXCESS). Not for verdicts: they use geo.conformal."""
    return angle_rad(unit_vectors(lat1_deg, lon1_deg), unit_vectors(lat2_deg, lon2_deg)) * (
        EARTH_MEAN_RADIUS_KM
    )


def geodesic_km(lat1_deg: float, lon1_deg: float, lat2_deg: float, lon2_deg: float) -> float:
    """WGS84 ellipsoidal geodesic distance in km (GeographicLib; error below 15 nanometres)."""
    result = Geodesic.WGS84.Inverse(lat1_deg, lon1_deg, lat2_deg, lon2_deg, Geodesic.DISTANCE)
    return float(result["s12"]) / 1000.0


def km_to_rad(distance_km: ArrayLike) -> Float64Array:
    return np.asarray(distance_km, dtype=np.float64) / EARTH_MEAN_RADIUS_KM


def rad_to_km(angle: ArrayLike) -> Float64Array:
    return np.asarray(angle, dtype=np.float64) * EARTH_MEAN_RADIUS_KM


def orthogonal_unit(v: Float64Array) -> Float64Array:
    """A unit vector orthogonal to each row of v (n, 3), chosen deterministically."""
    axis = np.zeros_like(v)
    # Cross with the coordinate axis least aligned with v: never degenerate.
    idx = np.argmin(np.abs(v), axis=-1)
    axis[np.arange(v.shape[0]), idx] = 1.0
    u = np.cross(v, axis)
    return np.asarray(u / np.linalg.norm(u, axis=-1, keepdims=True), dtype=np.float64)


def destination(
    lat_deg: float, lon_deg: float, bearing_deg: float, distance_km: float
) -> tuple[float, float]:
    """Point reached from (lat, lon) going `distance_km` on the sphere at initial `bearing_deg`."""
    lat1 = math.radians(lat_deg)
    lon1 = math.radians(lon_deg)
    brg = math.radians(bearing_deg)
    d = distance_km / EARTH_MEAN_RADIUS_KM
    lat2 = math.asin(math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(brg))
    lon2 = lon1 + math.atan2(
        math.sin(brg) * math.sin(d) * math.cos(lat1), math.cos(d) - math.sin(lat1) * math.sin(lat2)
    )
    lon2_deg = (math.degrees(lon2) + 540.0) % 360.0 - 180.0
    return math.degrees(lat2), lon2_deg
