"""The eval's liar attack (sim.liars): it fools the plain engine, never F_f with f >= K."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import parse_policy
from lightfence.geo.sphere import destination, great_circle_km
from lightfence.sim.liars import liar_rtts
from lightfence.units import C_VACUUM_KM_PER_MS

# Devices truly in China; poses (relays) just outside it.
DEVICES = [(22.55, 114.05), (23.13, 113.26), (31.23, 121.47), (39.9, 116.4), (43.8, 87.6)]
POSES = [(22.30, 114.17), (22.20, 113.55), (25.03, 121.56), (37.57, 126.98), (21.03, 105.85)]


def relayed_table(
    device: tuple[float, float],
    pose: tuple[float, float],
    offsets: list[tuple[float, float, float]],
    liars: int,
) -> MeasurementTable:
    lms = [destination(*pose, brg, dist) for brg, dist, _ in offsets]
    lat = np.array([p[0] for p in lms])
    lon = np.array([p[1] for p in lms])
    leg_ms = 2.0 * float(great_circle_km(*pose, *device)) / C_VACUUM_KM_PER_MS
    to_pose_ms = 2.0 * great_circle_km(lat, lon, *pose) / C_VACUUM_KM_PER_MS
    # Honest landmarks: at least the vacuum round trip to the relay, plus the relay leg.
    honest = to_pose_ms * np.array([infl for _, _, infl in offsets]) + leg_ms + 1e-6
    rtt, _ = liar_rtts(lat, lon, honest, *pose, liars)
    n = len(rtt)
    return MeasurementTable(
        device_start=np.array([0, n], dtype=np.int64),
        lat_deg=lat,
        lon_deg=lon,
        rtt_ms=rtt,
        floor_ms=np.zeros(n),
        position_error_km=np.zeros(n),
    )


offsets = st.lists(
    st.tuples(st.floats(0, 360), st.floats(1, 1500), st.floats(1.0, 3.0)), min_size=2, max_size=9
)


@given(
    st.sampled_from(DEVICES),
    st.sampled_from(POSES),
    offsets,
    st.integers(1, 2),
    st.integers(0, 1),
)
def test_k_liars_never_verify_under_f_at_least_k(
    device: tuple[float, float],
    pose: tuple[float, float],
    offs: list[tuple[float, float, float]],
    k: int,
    extra: int,
) -> None:
    table = relayed_table(device, pose, offs, k)
    result = decide_batch(table, parse_policy("outside:CN", liars=k + extra))
    assert result.kind[0] != VerdictKind.VERIFIED.code


def test_one_liar_near_the_pose_fools_the_plain_engine() -> None:
    # A Shanghai device posing as Taipei (a Hong Kong pose lies within China's 12 nm margin).
    offs = [(0.0, 3.0, 1.5), (90.0, 400.0, 1.5), (200.0, 700.0, 1.5), (300.0, 900.0, 2.0)]
    plain = parse_policy("outside:CN", liars=0)
    fooled = decide_batch(relayed_table(DEVICES[2], POSES[2], offs, 1), plain)
    assert fooled.kind[0] == VerdictKind.VERIFIED.code
    honest = decide_batch(relayed_table(DEVICES[2], POSES[2], offs, 0), plain)
    assert honest.kind[0] != VerdictKind.VERIFIED.code
    robust = decide_batch(relayed_table(DEVICES[2], POSES[2], offs, 1), parse_policy("outside:CN"))
    assert robust.tolerated_liars[0] == 1
    assert robust.kind[0] != VerdictKind.VERIFIED.code


def test_liar_rtts_picks_the_nearest_and_never_lengthens() -> None:
    lat = np.array([22.3, 22.4, 30.0])
    lon = np.array([114.2, 114.1, 120.0])
    rtt = np.array([0.001, 5.0, 50.0])
    out, chosen = liar_rtts(lat, lon, rtt, 22.3, 114.17, 2)
    assert sorted(chosen.tolist()) == [0, 1]
    assert out[0] == 0.001  # already shorter than the lie
    assert out[1] < 5.0 and out[2] == 50.0
    same, none = liar_rtts(lat, lon, rtt, 22.3, 114.17, 0)
    assert np.array_equal(same, rtt) and len(none) == 0
    with pytest.raises(ValueError):
        liar_rtts(lat, lon, rtt, 22.3, 114.17, -1)
