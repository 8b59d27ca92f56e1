"""The one invariant: a VERIFIED verdict is never wrong, and the true region is never REFUTED.

True positions are drawn near borders, poles and the antimeridian; RTTs are the physical
minimum for the true position (vacuum, WGS84 geodesic) plus arbitrary added delay.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, event, given
from hypothesis import strategies as st

from lightfence.core.kinds import VerdictKind
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import claimed_region, parse_policy
from lightfence.core.verdict import decide
from lightfence.geo.naturalearth import countries
from lightfence.geo.sphere import destination, geodesic_km
from lightfence.units import C_VACUUM_KM_PER_MS

# Places where borders are close together, plus poles and the antimeridian.
HOTSPOTS = [
    (22.25, 114.17),  # Hong Kong / Shenzhen
    (22.19, 113.54),  # Macau / Zhuhai
    (1.30, 103.85),  # Singapore / Johor
    (49.61, 6.13),  # Luxembourg
    (43.73, 7.42),  # Monaco
    (42.0, 130.7),  # China / North Korea / Russia
    (21.5, 108.0),  # China / Vietnam
    (65.0, -179.9),  # Chukotka, antimeridian
    (-17.8, 179.5),  # Fiji, antimeridian
    (89.9, 0.0),  # North Pole
    (-89.9, 40.0),  # South Pole, Antarctica
    (47.5, 9.6),  # Lake Constance: DE / AT / CH
    (51.0, 10.4),  # central Germany: in-country VERIFIED is reachable here
    (34.5, 104.0),  # central China
    (39.0, -98.0),  # central United States
]

POLICIES = [
    "outside:CN,HK,MO",
    "in:DE",
    "in:SG",
    "in:LU",
    "in:FJ",
    "in:RU",
    "outside:RU",
    "in:CN",
    "in:US",
    "within:51.0,10.4,150",
]


def true_rtt_ms(lm: Landmark, lat: float, lon: float) -> float:
    return 2.0 * geodesic_km(lm.lat, lm.lon, lat, lon) / C_VACUUM_KM_PER_MS


def point_near(hotspot: int, bearing: float, dist_km: float) -> tuple[float, float]:
    lat, lon = HOTSPOTS[hotspot]
    return destination(lat, lon, bearing, dist_km)


positions = st.builds(
    point_near,
    st.integers(0, len(HOTSPOTS) - 1),
    st.floats(0, 360),
    st.floats(0, 400),
)

landmark_offsets = st.lists(
    st.tuples(
        st.floats(0, 360),
        st.one_of(st.floats(0.5, 3000), st.floats(0.5, 60)),
        st.one_of(st.floats(0, 5.0), st.floats(0, 0.05)),
    ),
    min_size=1,
    max_size=8,
)


def country_at(lat: float, lon: float) -> str | None:
    """The Natural Earth country containing the point, if any (None at sea)."""
    for code in countries():
        if claimed_region(code).contains(np.array([lat]), np.array([lon]))[0]:
            return code
    return None


@given(positions, landmark_offsets, st.sampled_from(POLICIES))
def test_verified_implies_inside_allowed(
    pos: tuple[float, float], offsets: list[tuple[float, float, float]], policy_text: str
) -> None:
    lat, lon = pos
    landmarks = [
        Landmark(f"l{i}", *destination(lat, lon, brg, dist))
        for i, (brg, dist, _) in enumerate(offsets)
    ]
    measurements = [
        Measurement(lm, true_rtt_ms(lm, lat, lon) + extra + 1e-9)
        for lm, (_, _, extra) in zip(landmarks, offsets, strict=True)
    ]
    policy = parse_policy(policy_text)
    verdict = decide(measurements, policy)
    event(f"{policy_text}: {verdict.kind.value}")
    assert verdict.kind is not VerdictKind.INCONSISTENT  # honest landmarks never contradict
    if verdict.kind is VerdictKind.VERIFIED:
        assert policy.allowed is not None
        assert policy.allowed.contains(np.array([lat]), np.array([lon]))[0], (
            f"false VERIFIED at {lat}, {lon} under {policy_text}"
        )


@given(positions, landmark_offsets)
def test_true_country_is_never_refuted(
    pos: tuple[float, float], offsets: list[tuple[float, float, float]]
) -> None:
    lat, lon = pos
    code = country_at(lat, lon)
    # At sea there is no country to claim: discard the example (counted by Hypothesis, and
    # reported if it discards too many) instead of passing it as if it had been checked.
    assume(code is not None)
    assert code is not None
    landmarks = [
        Landmark(f"l{i}", *destination(lat, lon, brg, dist))
        for i, (brg, dist, _) in enumerate(offsets)
    ]
    measurements = [
        Measurement(lm, true_rtt_ms(lm, lat, lon) + extra + 1e-9)
        for lm, (_, _, extra) in zip(landmarks, offsets, strict=True)
    ]
    verdict = decide(measurements, parse_policy("outside:CN,HK,MO"), claimed=code)
    event(f"claimed {code}: {verdict.kind.value}")
    assert verdict.kind is not VerdictKind.REFUTED


RESTRICTED_HOSTS = [(30.25, 120.17), (40.77, 114.89), (22.30, 114.17), (39.9, 116.4)]
RELAYS = [(1.35, 103.82), (35.68, 139.69), (50.11, 8.68), (25.03, 121.56), (22.2, 114.3)]


@given(
    st.sampled_from(RESTRICTED_HOSTS),
    st.sampled_from(RELAYS),
    st.lists(
        st.tuples(st.floats(0, 360), st.floats(0.5, 2000), st.floats(0, 3.0)),
        min_size=1,
        max_size=8,
    ),
    st.floats(0, 5.0),
)
def test_relayed_device_is_never_verified_outside_its_region(
    device: tuple[float, float],
    relay: tuple[float, float],
    offsets: list[tuple[float, float, float]],
    relay_extra_ms: float,
) -> None:
    """Landmarks near the relay; RTT = landmark->relay + relay->device, each >= physics."""
    leg_ms = 2.0 * geodesic_km(*relay, *device) / C_VACUUM_KM_PER_MS + relay_extra_ms
    landmarks = [
        Landmark(f"l{i}", *destination(*relay, brg, dist))
        for i, (brg, dist, _) in enumerate(offsets)
    ]
    measurements = [
        Measurement(lm, true_rtt_ms(lm, *relay) + extra + leg_ms + 1e-9)
        for lm, (_, _, extra) in zip(landmarks, offsets, strict=True)
    ]
    verdict = decide(measurements, parse_policy("outside:CN,HK,MO"))
    if (
        claimed_region("CN").contains(np.array([device[0]]), np.array([device[1]]))[0]
        or (claimed_region("HK").contains(np.array([device[0]]), np.array([device[1]]))[0])
    ):
        assert verdict.kind is not VerdictKind.VERIFIED
