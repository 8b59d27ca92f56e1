"""The feasible region's vector outline (geo.feasible): the map draws what the caps say, with
no stair steps, no ring across the antimeridian, and no point estimate for a huge region."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, shape

from lightfence.geo.feasible import ESTIMATE_MAX_RADIUS_KM, cap_polygon, feasible_geojson
from lightfence.geo.sphere import geodesic_km
from lightfence.units import EARTH_MEAN_RADIUS_KM

R = EARTH_MEAN_RADIUS_KM


def _feature(caps: list[tuple[float, float, float]]) -> dict:  # type: ignore[type-arg]
    lat, lon, km = (np.array(x, dtype=np.float64) for x in zip(*caps, strict=True))
    return feasible_geojson(lat, lon, km / R, ids=[f"l{i}" for i in range(len(caps))])


def _rings(feature: dict) -> list[list[list[float]]]:  # type: ignore[type-arg]
    return [ring for poly in feature["geometry"]["coordinates"] for ring in poly]


def test_no_ring_crosses_the_antimeridian() -> None:
    f = _feature([(-17.0, 179.0, 1500.0)])  # Fiji: the cap spans +-180
    for ring in _rings(f):
        lons = [p[0] for p in ring]
        assert all(-180.0 <= x <= 180.0 for x in lons)
        assert all(abs(a - b) < 90.0 for a, b in itertools.pairwise(lons))
    assert len(f["geometry"]["coordinates"]) == 2  # one piece either side


def test_polar_cap_closes_along_the_pole() -> None:
    geom = cap_polygon(80.0, 0.0, 2000.0 / R)
    assert geom.contains(Point(123.0, 89.0)) and not geom.contains(Point(0.0, 60.0))


def test_area_and_estimate() -> None:
    small = _feature([(50.1, 8.7, 300.0), (48.1, 11.6, 320.0)])
    est = small["properties"]["estimate"]
    assert est is not None and est["radius_km"] < 400.0
    assert small["properties"]["caps"][0]["landmark_id"] == "l0"
    huge = _feature([(1.3, 103.8, 15_000.0)])
    assert huge["properties"]["estimate"] is None  # said in words, never dotted at its centre
    exact = (1.0 - math.cos(15_000.0 / R)) / 2.0
    assert abs(huge["properties"]["area_fraction"] - exact) < 0.002
    assert ESTIMATE_MAX_RADIUS_KM < 15_000.0


def test_disjoint_caps_give_no_geometry() -> None:
    assert _feature([(50.0, 8.0, 100.0), (-33.0, 151.0, 100.0)])["geometry"] is None


@settings(max_examples=40, deadline=None)
@given(
    lat=st.floats(-89.0, 89.0),
    lon=st.floats(-180.0, 180.0),
    km=st.floats(50.0, 19_000.0),
    bearing=st.floats(0.0, 360.0),
    frac=st.floats(0.0, 0.97),
)
def test_points_well_inside_a_cap_are_drawn_inside(
    lat: float, lon: float, km: float, bearing: float, frac: float
) -> None:
    from lightfence.geo.sphere import destination

    f = _feature([(lat, lon, km)])
    p_lat, p_lon = destination(lat, lon, bearing, km * frac)
    assert geodesic_km(lat, lon, p_lat, p_lon) < km
    # The outline is accurate to a sagitta; the sphere-vs-ellipsoid gap is 0.5 %: stay clear.
    region = shape(f["geometry"]).buffer(1e-9)
    assert region.contains(Point(((p_lon + 180.0) % 360.0) - 180.0, p_lat))
