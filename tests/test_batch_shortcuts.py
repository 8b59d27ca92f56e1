"""The shortcuts of core.batch: the probe stage (a vectorised first try of the border-vertex
test) and quick witnesses (a few candidates first for "is F non-empty").

Each may only give the answer the exact test would give, so they change the cost of a verdict,
never the verdict: checked cap set by cap set (hypothesis), and whole engines with and without
them on random and simulated fleets.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lightfence.core.batch as batch
from lightfence.core.batch import MeasurementTable, decide_batch, precise_may_intersect
from lightfence.core.policy import claimed_region, parse_policy
from lightfence.core.robust import robust_precise_may_intersect
from lightfence.fleet.kernel import verdicts_for_frame
from lightfence.fleet.simulate import AdversaryMix, simulate_fleet
from lightfence.geo.boundary import MAX_PROBES
from lightfence.geo.caps import drop_redundant, quick_witnesses, witnesses
from lightfence.geo.regions import Region
from lightfence.geo.sphere import destination
from lightfence.units import C_VACUUM_KM_PER_MS, Bound
from test_soundness import HOTSPOTS

REGION_TEXTS = ("outside:CN,HK,MO", "in:DE", "in:SG", "in:LU", "within:22.3,114.2,60")


def _regions() -> list[Region]:
    out: list[Region] = []
    for text in REGION_TEXTS:
        allowed = parse_policy(text).allowed
        assert allowed is not None
        out += [allowed, allowed.complement()]
    return out + [claimed_region(c) for c in ("HK", "CN", "US")]


REGIONS = _regions()

# Caps around a hotspot: (bearing, distance of the landmark from the hotspot km, cap radius km).
# Radii up to 6,000 km: wide caps cover long stretches of border, the case the probes are for.
cap_sets = st.tuples(
    st.integers(0, len(HOTSPOTS) - 1),
    st.lists(
        st.tuples(
            st.floats(0, 360),
            st.floats(0, 3000),
            st.one_of(st.floats(50, 6000), st.floats(1, 400)),
        ),
        min_size=1,
        max_size=8,
    ),
)


def _table(case: tuple[int, list[tuple[float, float, float]]]) -> MeasurementTable:
    hot, spec = case
    pts = np.array([destination(*HOTSPOTS[hot], brg, dist) for brg, dist, _ in spec])
    radius_km = np.array([r for _, _, r in spec])
    return MeasurementTable(
        device_start=np.array([0, len(spec)], dtype=np.int64),
        lat_deg=pts[:, 0],
        lon_deg=pts[:, 1],
        rtt_ms=2.0 * radius_km / C_VACUUM_KM_PER_MS,
        floor_ms=np.zeros(len(spec)),
        position_error_km=np.zeros(len(spec)),
    )


@settings(max_examples=120)
@given(cap_sets, st.integers(0, 2), st.integers(0, len(REGIONS) - 1))
def test_a_probe_hit_is_a_border_test_hit(
    case: tuple[int, list[tuple[float, float, float]]], liars: int, which: int
) -> None:
    region = REGIONS[which]
    caps = batch._Caps(_table(case), Bound.VACUUM)
    hit = batch._probe_stage(caps, np.array([0]), region, np.array([liars]))
    if not hit[0]:
        return  # not settled: the per-device test decides, as before
    # The per-device step 2 alone (witnesses_done skips step 1): it must find a vertex too.
    if liars == 0:
        assert precise_may_intersect(caps.vec, caps.radius, region, witnesses_done=True)
    else:
        assert robust_precise_may_intersect(
            caps.vec, caps.radius, region, liars, witnesses_done=True
        )


@settings(max_examples=200)
@given(cap_sets)
def test_a_quick_witness_is_a_witness(case: tuple[int, list[tuple[float, float, float]]]) -> None:
    caps = batch._Caps(_table(case), Bound.VACUUM)
    centres, radius = caps.block(np.array([0]))
    for c, r in ((centres, radius), drop_redundant(centres, radius)[:2]):
        if quick_witnesses(c, r)[0]:
            ok, _, _ = witnesses(c, r)
            assert ok[0]


def test_probes_are_stored_vertices_and_bounded() -> None:
    for region in REGIONS:
        index = region.boundary
        probes = index.probes
        assert len(probes) <= MAX_PROBES
        if len(index):
            assert len(probes) >= 1
            # Each probe is one of the stored vertices (so the full search can find it).
            nearest = (probes @ index.vectors.T).max(axis=1)
            assert np.all(nearest >= 1.0 - 1e-15)


def _without_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both shortcuts off: every device takes the exact paths, as before they existed."""

    def no_probes(caps: object, devices: np.ndarray, region: object, liars: object) -> np.ndarray:
        return np.zeros(len(devices), dtype=bool)

    def no_quick(centres: np.ndarray, radius: np.ndarray) -> np.ndarray:
        return np.zeros(len(centres), dtype=bool)

    monkeypatch.setattr(batch, "_probe_stage", no_probes)
    monkeypatch.setattr(batch, "quick_witnesses", no_quick)


@pytest.mark.parametrize("policy_text", ["outside:CN,HK,MO", "in-declared-country"])
def test_simulated_fleet_verdicts_do_not_depend_on_the_shortcuts(
    policy_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mix = AdversaryMix(added_delay=0.1, relay=0.15, cloned_key=0.05, silent=0.05)
    fleet = simulate_fleet(800, 10, seed=21, mix=mix)
    policy = parse_policy(policy_text)
    with_probes = verdicts_for_frame(fleet.measurements, policy)
    _without_probes(monkeypatch)
    without = verdicts_for_frame(fleet.measurements, policy)
    assert with_probes.equals(without)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("liars", ["0", "1", "auto"])
def test_random_tables_verdicts_do_not_depend_on_the_shortcuts(
    seed: int, liars: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    devices = 150
    counts = rng.integers(1, 9, devices)
    rows = int(counts.sum())
    hot = np.array(HOTSPOTS)[rng.integers(0, len(HOTSPOTS), devices)]
    lat = np.clip(np.repeat(hot[:, 0], counts) + rng.normal(0, 8, rows), -89.9, 89.9)
    lon = (np.repeat(hot[:, 1], counts) + rng.normal(0, 8, rows) + 180.0) % 360.0 - 180.0
    table = MeasurementTable(
        device_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        lat_deg=lat,
        lon_deg=lon,
        rtt_ms=rng.uniform(1.0, 60.0, rows),
        floor_ms=np.zeros(rows),
        position_error_km=np.zeros(rows),
    )
    claims = [str(c) for c in rng.choice(["CN", "DE", "SG", "RU", "LU", "HK", "US"], devices)]
    texts = ("outside:CN,HK,MO", "in:DE", "in-declared-country")
    results = [decide_batch(table, parse_policy(text, liars=liars), claims) for text in texts]
    _without_probes(monkeypatch)
    for text, got in zip(texts, results, strict=True):
        want = decide_batch(table, parse_policy(text, liars=liars), claims)
        assert np.array_equal(got.kind, want.kind), text
        assert np.array_equal(got.reason, want.reason), text
