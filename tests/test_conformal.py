"""The model sphere's bounds against GeographicLib: caps never too small, discs never too big."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.geo.boundary import CONFORMAL_STRETCH
from lightfence.geo.conformal import (
    M_EQUATOR_KM,
    POLE_INVERSE_SCALE_KM,
    SCALE_ROUNDING,
    WGS84_E2,
    conformal_lat_rad,
    geodetic_lat_deg,
    inner_reach_rad,
    model_lat_lon,
    model_vectors,
    reach_rad,
    scale_rad_per_km,
)
from lightfence.geo.sphere import angle_rad, destination, geodesic_km

lats = st.one_of(st.floats(-90, 90), st.floats(89.0, 90.0), st.floats(-90.0, -89.0))
lons = st.one_of(st.floats(-180, 180), st.floats(179.0, 180.0), st.floats(-180.0, -179.0))


def _model_angle(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return float(angle_rad(model_vectors(lat1, lon1), model_vectors(lat2, lon2)))


@settings(max_examples=600, deadline=None)
@given(lats, lons, lats, lons, st.floats(0.0, 1.0))
def test_reach_bounds_the_angle_of_every_geodesic(
    lat1: float, lon1: float, lat2: float, lon2: float, shrink: float
) -> None:
    # Pairs from near each other (most caps) to antipodal, poles and antimeridian included.
    lat2 = min(max(lat1 + (lat2 - lat1) * shrink, -90.0), 90.0)  # rounding may pass 90
    lon2 = lon1 + (lon2 - lon1) * shrink
    s_km = geodesic_km(lat1, lon1, lat2, lon2)
    angle = _model_angle(lat1, lon1, lat2, lon2)
    # 1e-12 rad of absolute slack: the angle itself is computed to about 1e-16.
    assert angle <= float(reach_rad(lat1, s_km)) + 1e-12


@settings(max_examples=400, deadline=None)
@given(lats, lons, st.floats(0.001, 3000.0), st.floats(0, 360), st.floats(0.0, 1.0))
def test_inner_reach_never_grows_a_disc(
    lat: float, lon: float, radius_km: float, bearing: float, frac: float
) -> None:
    """Every point the engine's disc holds is within the licensed radius on the ellipsoid."""
    rho = inner_reach_rad(lat, radius_km)
    # A point at model angle frac * rho from the centre, in some direction.
    centre = model_vectors(lat, lon)
    axis = np.cross(centre, model_vectors(*destination(lat, lon, bearing, 500.0)))
    if np.linalg.norm(axis) < 1e-9:
        return
    axis /= np.linalg.norm(axis)
    t = frac * rho
    p = np.cos(t) * centre + np.sin(t) * np.cross(axis, centre)
    plat, plon = model_lat_lon(p)
    assert geodesic_km(lat, lon, float(plat), float(plon)) <= radius_km * (1 + 1e-9) + 1e-9


def test_round_trip_and_scale_facts() -> None:
    lat = np.linspace(-90.0, 90.0, 200001)
    assert np.max(np.abs(geodetic_lat_deg(conformal_lat_rad(lat)) - lat)) < 1e-12
    la, _ = model_lat_lon(model_vectors(lat, lat * 1.9 - 171.0))
    assert np.max(np.abs(la - lat)) < 1e-12
    g = scale_rad_per_km(lat[lat >= 0])
    # g grows towards the pole (reach_rad relies on it), up to rounding that SCALE_ROUNDING covers.
    assert np.all(np.diff(g) >= -SCALE_ROUNDING * g[1:] / 10)
    assert abs(1 / g[-1] - POLE_INVERSE_SCALE_KM) < 1e-6
    assert abs(1 / g[0] - 6378.137) < 1e-9
    phi = np.radians(np.linspace(-89.9999, 89.9999, 400001))
    chi = conformal_lat_rad(np.degrees(phi))
    stretch = np.cos(chi) / np.cos(phi)
    dchi = (1 - WGS84_E2) * stretch / (1 - WGS84_E2 * np.sin(phi) ** 2)
    assert max(stretch.max(), dchi.max()) <= CONFORMAL_STRETCH
    assert M_EQUATOR_KM < 6335.44


def test_the_cap_is_tight() -> None:
    """Precision: a 300 km cap at 30 degrees is within 0.05 % of its true image."""
    lat, lon = 30.0, 110.0
    worst = 0.0
    for brg in range(0, 360, 15):
        plat, plon = destination(lat, lon, brg, 300.0)
        s = geodesic_km(lat, lon, plat, plon)
        worst = max(worst, float(reach_rad(lat, s)) / _model_angle(lat, lon, plat, plon))
    assert 1.0 <= worst < 1.0005


def test_the_scale_table_only_rounds_up() -> None:
    """reach_rad reads g from a table at the next latitude up: never below the exact g."""
    lat = np.linspace(0.0, 90.0, 900_001)
    exact = scale_rad_per_km(lat)
    angle = reach_rad(lat - np.degrees(1.0 / M_EQUATOR_KM), np.full(lat.size, 1.0))
    # 1 km from latitude lat - 1 km's worth reaches lat: the table's g must be >= g(lat).
    assert np.all(angle >= exact * (1 - 1e-15))
