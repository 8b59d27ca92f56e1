"""Regions at the awkward places: tiny countries, multi-part countries, the antimeridian, poles."""

from __future__ import annotations

import numpy as np
import pytest

from lightfence.core.kinds import VerdictKind
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import claimed_region, parse_policy
from lightfence.core.verdict import decide
from lightfence.geo.regions import Countries, Disc
from lightfence.geo.sphere import unit_vectors
from lightfence.units import EARTH_MEAN_RADIUS_KM


def inside(code: str, lat: float, lon: float) -> bool:
    return bool(claimed_region(code).contains(np.array([lat]), np.array([lon]))[0])


@pytest.mark.parametrize(
    ("code", "lat", "lon"),
    [
        ("SG", 1.29, 103.85),
        ("LU", 49.61, 6.13),
        ("MC", 43.7384, 7.4246),
        ("FJ", -16.5, 179.5),  # Vanua Levu, east of the antimeridian split
        ("FJ", -17.8, 177.5),  # Viti Levu
        ("RU", 65.0, 178.0),  # Chukotka, both sides of 180
        ("RU", 66.0, -175.0),
        ("US", 52.85, 173.2),  # Attu, Aleutians, west of the antimeridian
        ("AQ", -89.5, 0.0),  # next to the South Pole
        ("HK", 22.28, 114.16),
        ("MO", 22.19, 113.55),
    ],
)
def test_point_in_country(code: str, lat: float, lon: float) -> None:
    assert inside(code, lat, lon)


def test_longitudes_beyond_180_wrap() -> None:
    assert inside("RU", 66.0, 185.0)  # 185 E == 175 W


def test_multi_record_countries_are_merged() -> None:
    australia = Countries(["AU"])  # Natural Earth has four AU records
    assert australia.contains(np.array([-33.87, -42.88]), np.array([151.21, 147.33])).all()


def test_boundary_distance_is_a_lower_bound() -> None:
    sg = Countries(["SG"])
    v = unit_vectors(np.array([1.35]), np.array([103.82])).reshape(-1, 3)
    d_km = float(sg.boundary.distance_lower_bound_rad(v)[0] * EARTH_MEAN_RADIUS_KM)
    assert 0.0 <= d_km < 20.0  # Singapore is about 25 km across


def test_tiny_country_cannot_be_verified_but_neighbour_is_refuted() -> None:
    """A device in Monaco measured from 1 km away: never VERIFIED in Monaco (the region
    shrinks to nothing by its data error) and never REFUTED as Monaco."""
    lm = Landmark("nice", 43.70, 7.27)
    rtt = 2 * 13.0 / 299.792458 + 0.001
    v = decide([Measurement(lm, rtt)], parse_policy("in:MC"), claimed="MC")
    assert v.kind is VerdictKind.UNVERIFIED


def test_far_device_claiming_a_tiny_country_is_refuted() -> None:
    lm = Landmark("tokyo", 35.68, 139.69)
    v = decide([Measurement(lm, 1.0)], parse_policy("outside:CN"), claimed="LU")
    assert v.kind is VerdictKind.REFUTED


def test_antimeridian_device_verified_outside_restricted() -> None:
    lm = Landmark("suva", -18.14, 178.44)
    v = decide([Measurement(lm, 2.0)], parse_policy("outside:CN,HK,MO"), claimed="FJ")
    assert v.kind is VerdictKind.VERIFIED


def test_polar_caps_work() -> None:
    lm = Landmark("pole", 89.99, 0.0)
    v = decide([Measurement(lm, 5.0)], parse_policy("outside:CN,HK,MO"))
    assert v.kind is VerdictKind.VERIFIED
    v = decide([Measurement(lm, 5.0)], parse_policy("outside:RU"))
    assert v.kind is VerdictKind.VERIFIED  # 750 km from the pole is far from Russia


def test_disc_policy_near_and_far() -> None:
    site = Disc(50.11, 8.68, 100.0)
    assert site.contains(np.array([50.5]), np.array([8.7]))[0]
    lm = Landmark("fra", 50.11, 8.68)
    assert decide([Measurement(lm, 0.5)], parse_policy("within:50.11,8.68,100")).kind is (
        VerdictKind.VERIFIED
    )
    # 0.7 ms reaches 105 km: beyond the 100 km licence, so not VERIFIED.
    assert decide([Measurement(lm, 0.7)], parse_policy("within:50.11,8.68,100")).kind is (
        VerdictKind.UNVERIFIED
    )


def test_feasible_region_geojson_contains_the_device() -> None:
    from shapely.geometry import Point, shape

    lms = [Landmark("a", 50.0, 8.0), Landmark("b", 48.0, 11.0)]
    lat, lon = 49.0, 9.5
    from lightfence.geo.sphere import geodesic_km

    ms = [Measurement(lm, 2 * geodesic_km(lm.lat, lm.lon, lat, lon) / 299.79 + 0.3) for lm in lms]
    v = decide(ms, parse_policy("outside:CN"))
    feature = v.feasible_geojson()
    assert feature["geometry"] is not None
    assert (
        shape(feature["geometry"])
        .buffer(feature["properties"]["cell_deg"])
        .contains(Point(lon, lat))
    )
