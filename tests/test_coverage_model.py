"""The coverage model against the verdict engine, and against the real verdicts of real hosts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import parse_policy
from lightfence.core.verdict import VerdictKind, decide
from lightfence.coverage.grid import land_grid
from lightfence.coverage.inputs import Places, shipped_landmarks
from lightfence.coverage.model import (
    MAX_INFLATION,
    evaluate,
    nearest_landmarks,
    quantile_rtt_ms,
    scaled_rtt_ms,
    verified,
)
from lightfence.coverage.realcheck import check_targets

POLICIES = ("outside:CN,HK,MO", "in-declared-country")


def _sample_cells(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    grid = land_grid(2)
    pick = np.random.default_rng(seed).choice(len(grid), size=n, replace=False)
    # Europe is where landmarks are dense and verdicts are close calls: sample it as well.
    europe = np.flatnonzero((grid.lat > 40) & (grid.lat < 60) & (grid.lon > -5) & (grid.lon < 25))
    pick = np.concatenate([pick, europe[:: max(1, len(europe) // n)]])
    return grid.lat[pick], grid.lon[pick], [grid.country[i] for i in pick]


def _decide_each(
    lms: Places, lat: np.ndarray, lon: np.ndarray, rtt: np.ndarray, policy: str, country: list[str]
) -> list[bool]:
    """The single-device engine on a device at each point with the given RTTs to its K nearest."""
    nb = nearest_landmarks(lat, lon, lms, 8)
    out = []
    for i in range(len(lat)):
        ms = [
            Measurement(Landmark(lms.names[j], float(lms.lat[j]), float(lms.lon[j])), float(r))
            for j, r in zip(nb.idx[i], rtt[i], strict=True)
        ]
        out.append(decide(ms, parse_policy(policy), country[i]).kind is VerdictKind.VERIFIED)
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_map_agrees_with_the_verdict_engine_at_the_quantile(policy: str) -> None:
    lms = shipped_landmarks()
    lat, lon, country = _sample_cells(25, seed=7)
    cov = evaluate(lat, lon, country, lms, parse_policy(policy))
    nb = nearest_landmarks(lat, lon, lms, 8)
    real = _decide_each(lms, lat, lon, quantile_rtt_ms(nb, 0.5), policy, country)
    assert cov.verifiable.tolist() == real
    if policy.startswith("outside"):
        assert 0 < cov.verifiable.sum() < len(lat)  # the sample has both answers


@pytest.mark.parametrize("policy", POLICIES)
def test_slack_is_a_threshold_of_the_verdict_engine(policy: str) -> None:
    lms = shipped_landmarks()
    lat, lon, country = _sample_cells(15, seed=11)
    cov = evaluate(lat, lon, country, lms, parse_policy(policy))
    nb = nearest_landmarks(lat, lon, lms, 8)
    s = cov.max_inflation
    at = _decide_each(lms, lat, lon, scaled_rtt_ms(nb, np.maximum(s, 1.0)), policy, country)
    above = _decide_each(
        lms, lat, lon, scaled_rtt_ms(nb, np.maximum(s, 1.0) * 1.04), policy, country
    )
    for i in range(len(lat)):
        if s[i] >= 1.0:
            assert at[i], f"cell {i}: not VERIFIED at its own max_inflation {s[i]}"
        else:
            assert not at[i]
        if s[i] < MAX_INFLATION:
            assert not above[i], f"cell {i}: still VERIFIED 4 % above max_inflation {s[i]}"


def test_pruning_to_the_nearest_landmarks_only_loses() -> None:
    lms = shipped_landmarks()
    policy = parse_policy("outside:CN,HK,MO")
    lat, lon, country = _sample_cells(40, seed=3)
    by_k = {}
    for k in (3, 8, 40):
        nb = nearest_landmarks(lat, lon, lms, k)
        by_k[k] = verified(lms, nb, scaled_rtt_ms(nb, 4.0), policy, country)
    assert np.all(by_k[3] <= by_k[8])
    assert np.all(by_k[8] <= by_k[40])


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_map_predicts_real_verdicts_of_real_hosts(policy: str) -> None:
    checks = check_targets(parse_policy(policy))
    agree = sum(c.agrees for c in checks)
    exceptions = [c.target for c in checks if not c.agrees]
    assert agree >= 0.95 * len(checks), f"{agree}/{len(checks)} agree; exceptions: {exceptions}"


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**31),
    s_lo=st.floats(1.0, 8.0),
    factor=st.floats(1.0, 4.0),
    policy=st.sampled_from(["in:DE", "outside:CN,HK,MO", "within:50.1,8.7,400"]),
)
def test_verifiability_only_shrinks_with_inflation_and_grows_with_landmarks(
    seed: int, s_lo: float, factor: float, policy: str
) -> None:
    rng = np.random.default_rng(seed)
    n = 12
    lms = Places(
        names=tuple(f"l{i}" for i in range(n)),
        lat=rng.uniform(44.0, 56.0, n),
        lon=rng.uniform(0.0, 20.0, n),
        country=(None,) * n,
        gpus=np.ones(n),
    )
    lat, lon = rng.uniform(47.5, 54.0, 4), rng.uniform(6.5, 14.0, 4)
    pol = parse_policy(policy)
    country = ["DE"] * 4
    nb = nearest_landmarks(lat, lon, lms, 6)
    at_lo = verified(lms, nb, scaled_rtt_ms(nb, s_lo), pol, country)
    at_hi = verified(lms, nb, scaled_rtt_ms(nb, s_lo * factor), pol, country)
    assert np.all(at_hi <= at_lo)
    few = nearest_landmarks(lat, lon, lms, 2)
    assert np.all(verified(lms, few, scaled_rtt_ms(few, s_lo), pol, country) <= at_lo)
