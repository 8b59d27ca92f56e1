"""The engine against the brute-force reference, on the shipped real data and near borders."""

from __future__ import annotations

import numpy as np
import pytest

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import parse_policy
from lightfence.eval.verdicts import honest_cases
from lightfence.rttdata import load_dataset
from reference import forbidden_test, reference_verified


def _table(cases: list) -> MeasurementTable:  # type: ignore[type-arg]
    counts = np.array([len(c.landmarks) for c in cases])
    hosts = [h for c in cases for h in c.landmarks]
    return MeasurementTable(
        device_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        lat_deg=np.array([h.lat for h in hosts]),
        lon_deg=np.array([h.lon for h in hosts]),
        rtt_ms=np.array([r for c in cases for r in c.rtts_ms]),
        floor_ms=np.zeros(len(hosts)),
        position_error_km=np.zeros(len(hosts)),
    )


@pytest.mark.parametrize(
    ("policy_text", "bound"),
    [
        ("outside:CN,HK,MO", "vacuum"),
        ("outside:CN,HK,MO", "fibre"),
        ("outside:DE,NL,BE,LU,FR", "fibre"),
    ],
)
def test_engine_matches_reference_on_shipped_data(policy_text: str, bound: str) -> None:
    cases = honest_cases(load_dataset())
    table = _table(cases)
    policy = parse_policy(policy_text, bound, liars=0)  # the reference computes the plain F
    engine = decide_batch(table, policy).names()
    test = forbidden_test(policy, None)
    ref = [reference_verified(table, d, policy, test, spacing_km=8.0) for d in range(len(cases))]
    eng = [v == VerdictKind.VERIFIED for v in engine]
    unsound = [cases[d].target.id for d in range(len(cases)) if eng[d] and not ref[d]]
    assert not unsound, f"engine VERIFIED where the reference finds a forbidden point: {unsound}"
    lost = sum(ref) - sum(eng)
    assert lost / len(cases) < 0.01, f"engine loses {lost} of {len(cases)} targets' coverage"
