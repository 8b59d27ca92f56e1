"""geo.sphere's rough distance against GeographicLib: within ELLIPSOID_EXCESS either way."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.geo.sphere import ELLIPSOID_EXCESS, geodesic_km, great_circle_km

lats = st.one_of(st.floats(-90, 90), st.floats(88.0, 90.0), st.floats(-90.0, -88.0))
lons = st.one_of(st.floats(-180, 180), st.floats(179.0, 180.0), st.floats(-180.0, -179.0))


@settings(max_examples=500, deadline=None)
@given(lats, lons, st.floats(-3, 3), st.floats(-3, 3))
def test_great_circle_is_within_the_excess_of_the_geodesic(
    lat: float, lon: float, dlat: float, dlon: float
) -> None:
    lat2 = max(min(lat + dlat, 90.0), -90.0)
    lon2 = lon + dlon  # crosses the antimeridian when lon is near +-180
    s = geodesic_km(lat, lon, lat2, lon2)
    if s < 1e-3:
        return
    ratio = float(great_circle_km(lat, lon, lat2, lon2)) / s
    assert 1.0 - ELLIPSOID_EXCESS <= ratio <= 1.0 + ELLIPSOID_EXCESS
