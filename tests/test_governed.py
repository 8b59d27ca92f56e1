"""Countries as governed (issue 15, item 2): waters, islands, disputed areas, the sea opt-in.

Devices are measured at the exact vacuum minimum RTT (WGS84 geodesic, a hair more), so their
caps are as tight as physics allows; a region's error is then all that stands between a device
and a verdict.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.core.kinds import VerdictKind
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import (
    PolicyError,
    claimed_region,
    countries_region,
    governed_region,
    parse_policy,
)
from lightfence.core.verdict import Verdict, decide
from lightfence.geo.governed import (
    GOVERNED_ERROR_KM,
    SEA_BUFFER_DEG,
    TERRITORIAL_SEA_KM,
    governed_parts,
)
from lightfence.geo.sphere import destination, geodesic_km
from lightfence.units import C_VACUUM_KM_PER_MS, EARTH_MEAN_RADIUS_KM

OUTSIDE = "outside:CN,HK,MO"


def tight(landmarks: list[tuple[float, float]], lat: float, lon: float) -> list[Measurement]:
    """Measurements of a device at (lat, lon) at the physical minimum RTT, plus 1 ns."""
    return [
        Measurement(
            Landmark(f"l{i}", la, lo),
            2.0 * geodesic_km(la, lo, lat, lon) / C_VACUUM_KM_PER_MS + 1e-6,
        )
        for i, (la, lo) in enumerate(landmarks)
    ]


def around(lat: float, lon: float, dist_km: float = 150.0, n: int = 4) -> list[tuple[float, float]]:
    return [destination(lat, lon, 360.0 * k / n + 10.0, dist_km) for k in range(n)]


def verdict(policy: str, lat: float, lon: float, claimed: str | None = None) -> Verdict:
    return decide(tight(around(lat, lon), lat, lon), parse_policy(policy), claimed=claimed)


# Places the red team named, at points of the island data (GSHHG) or in the named area.
ISLANDS = {
    "Upper Dachen": (28.4415, 121.8879),
    "Yushan": (28.8904, 122.2579),
    "Taishan": (27.0046, 120.6985),
    "Qizhou": (19.9646, 111.2517),
    "Sheshan": (31.4221, 122.2410),
    "Woody Island (Paracels)": (16.8349, 112.3304),
    "Fiery Cross Reef (Spratlys)": (9.55, 112.89),
    "Itu Aba (Spratlys)": (10.377, 114.365),
    "Scarborough Reef": (15.15, 117.755),
}


def test_territorial_sea_margin_is_12_nautical_miles() -> None:
    assert abs(TERRITORIAL_SEA_KM - 22.224) < 1e-9
    assert claimed_region("CN").data_error_km == pytest.approx(GOVERNED_ERROR_KM)
    assert governed_region(("CN", "HK", "MO")).data_error_km == pytest.approx(32.224)
    # The sea opt-in's lon/lat radius never reaches beyond 12 nm on the sphere.
    assert np.radians(SEA_BUFFER_DEG) * EARTH_MEAN_RADIUS_KM < TERRITORIAL_SEA_KM


def test_bohai_sea_device_with_six_chinese_coastal_landmarks() -> None:
    """Finding: VERIFIED outside:CN,HK,MO and REFUTED declaring CN. Internal waters now count."""
    coast = [
        (38.91, 121.60),  # Dalian
        (38.98, 117.72),  # Tianjin Binhai
        (39.93, 119.60),  # Qinhuangdao
        (37.46, 121.45),  # Yantai
        (37.43, 118.67),  # Dongying
        (40.71, 120.84),  # Huludao
    ]
    lat, lon = 38.8, 120.0
    ms = tight(coast, lat, lon)
    assert decide(ms, parse_policy(OUTSIDE)).kind is not VerdictKind.VERIFIED
    assert decide(ms, parse_policy(OUTSIDE), claimed="CN").kind is not VerdictKind.REFUTED
    assert claimed_region("CN").contains(np.array([lat]), np.array([lon]))[0]


@pytest.mark.parametrize("place", sorted(ISLANDS))
def test_islands_are_china_as_governed(place: str) -> None:
    lat, lon = ISLANDS[place]
    assert verdict(OUTSIDE, lat, lon).kind is not VerdictKind.VERIFIED
    assert verdict(OUTSIDE, lat, lon, claimed="CN").kind is not VerdictKind.REFUTED


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_ten_km_off_any_chinese_coast_is_never_refuted_or_verified(data: st.DataObject) -> None:
    land = countries_region(("CN",)).geometry
    rings = [np.asarray(p.exterior.coords) for p in land.geoms if p.area > 0.01]
    ring = rings[data.draw(st.integers(0, len(rings) - 1))]
    lon0, lat0 = ring[data.draw(st.integers(0, len(ring) - 1))]
    lat, lon = destination(lat0, lon0, data.draw(st.floats(0, 360)), 10.0)
    dist = data.draw(st.floats(20.0, 800.0))
    lms = around(lat, lon, dist, data.draw(st.integers(1, 6)))
    ms = tight(lms, lat, lon)
    assert decide(ms, parse_policy(OUTSIDE)).kind is not VerdictKind.VERIFIED
    assert decide(ms, parse_policy(OUTSIDE), claimed="CN").kind is not VerdictKind.REFUTED


TAIPEI = (25.03, 121.56)
KINMEN = (24.44, 118.38)


def test_taiwan_is_not_restricted_by_outside_cn_but_is_claimed_by_cn() -> None:
    """docs/regions.md, Taiwan: export-control rules list Taiwan apart from China and Macau."""
    assert verdict(OUTSIDE, *TAIPEI).kind is VerdictKind.VERIFIED
    assert verdict("outside:CN,HK,MO,TW", *TAIPEI).kind is not VerdictKind.VERIFIED
    assert verdict(OUTSIDE, *TAIPEI, claimed="CN").kind is not VerdictKind.REFUTED
    assert verdict(OUTSIDE, *TAIPEI, claimed="TW").kind is not VerdictKind.REFUTED
    # Taiwan's claim does not reach the mainland: a TW device in Shanghai is refuted.
    assert verdict(OUTSIDE, 31.23, 121.47, claimed="TW").kind is VerdictKind.REFUTED


def test_kinmen_lies_within_chinas_territorial_sea_margin() -> None:
    """Kinmen is Taiwan's, 2-10 km off Xiamen: inside CN's 12 nm + error, so never VERIFIED
    outside CN (over-restriction, the safe side), and never REFUTED as TW or CN."""
    assert verdict(OUTSIDE, *KINMEN).kind is not VerdictKind.VERIFIED
    assert verdict(OUTSIDE, *KINMEN, claimed="TW").kind is not VerdictKind.REFUTED
    assert verdict(OUTSIDE, *KINMEN, claimed="CN").kind is not VerdictKind.REFUTED


@pytest.mark.parametrize(
    ("place", "lat", "lon"),
    [("Aksai Chin", 35.0, 79.5), ("Arunachal Pradesh (Itanagar)", 27.08, 93.6)],
)
def test_india_china_disputed_areas_are_both_countries(place: str, lat: float, lon: float) -> None:
    assert verdict(OUTSIDE, lat, lon).kind is not VerdictKind.VERIFIED
    assert verdict(OUTSIDE, lat, lon, claimed="CN").kind is not VerdictKind.REFUTED
    assert verdict(OUTSIDE, lat, lon, claimed="IN").kind is not VerdictKind.REFUTED


OFF_WANGEROOGE = (53.835, 7.90)  # 5 km north of Wangerooge, German North Sea coast
NORTH_SEA_LANDMARKS = [(53.55, 7.9), (53.87, 8.7), (53.6, 7.2)]


def test_in_de_is_land_only_and_in_sea_de_can_verify_the_coast() -> None:
    lat, lon = OFF_WANGEROOGE
    assert not countries_region(("DE",)).contains(np.array([lat]), np.array([lon]))[0]
    ms = tight(NORTH_SEA_LANDMARKS, lat, lon)
    assert decide(ms, parse_policy("in:DE")).kind is not VerdictKind.VERIFIED
    sea = decide(ms, parse_policy("in+sea:DE"))
    assert sea.kind is VerdictKind.VERIFIED
    assert "territorial sea" in sea.reason
    declared = decide(ms, parse_policy("in-declared-country+sea"), claimed="DE")
    assert declared.kind is VerdictKind.VERIFIED
    assert decide(ms, parse_policy("in-declared-country"), claimed="DE").kind is not (
        VerdictKind.VERIFIED
    )


def test_in_sea_never_crosses_towards_a_neighbour() -> None:
    """in+sea:DE stays clear of 12 nm around the Netherlands and Denmark."""
    region = parse_policy("in+sea:DE").allowed
    assert region is not None
    assert not region.contains(np.array([53.60]), np.array([6.40]))[0]  # off Rottumeroog, NL
    assert not region.contains(np.array([55.05]), np.array([8.30]))[0]  # off Rømø, DK


def test_policy_texts() -> None:
    for text in (OUTSIDE, "in:DE", "in:DE,FR", "within:50.1,8.6,100.0", "in-declared-country"):
        assert parse_policy(text).text == text
    sea = parse_policy("in+sea:fr,de")
    assert sea.text == "in+sea:DE,FR"
    assert "in+sea:DE,FR" in sea.describe()
    declared = parse_policy("in-declared-country+sea")
    assert declared.sea and declared.text == "in-declared-country+sea"
    with pytest.raises(PolicyError, match="in\\+sea"):
        parse_policy("in+ocean:DE")


def _piece_points() -> list[tuple[str, float, float]]:
    """A point of every shipped piece of some countries (a sample of the added geometry)."""
    out = []
    parts = governed_parts()
    for code in ("CN", "TW", "IN", "VN", "PH", "JP", "DE"):
        for geom in parts.get(code, ())[:: max(len(parts.get(code, ())) // 40, 1)]:
            p = geom.representative_point()
            out.append((code, p.y, p.x))
    return out


PIECE_POINTS = _piece_points()


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(PIECE_POINTS),
    st.floats(0, 360),
    st.floats(0, TERRITORIAL_SEA_KM * 0.999),
    st.lists(st.tuples(st.floats(0, 360), st.floats(1.0, 1500.0)), min_size=1, max_size=6),
)
def test_a_position_in_the_governed_region_is_never_refuted(
    piece: tuple[str, float, float],
    bearing: float,
    sea_km: float,
    offsets: list[tuple[float, float]],
) -> None:
    """True positions on an added piece or in its territorial sea, declaring that country."""
    code, lat0, lon0 = piece
    lat, lon = destination(lat0, lon0, bearing, sea_km)
    lms = [destination(lat, lon, brg, dist) for brg, dist in offsets]
    v = decide(tight(lms, lat, lon), parse_policy(OUTSIDE), claimed=code)
    assert v.kind is not VerdictKind.REFUTED, f"{code} refuted at {lat}, {lon}"
