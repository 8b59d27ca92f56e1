"""`lightfence eval`: verdicts, relays and estimates over a data set, as one JSON-able summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightfence.core.estimate import EstimateSettings
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import Policy
from lightfence.eval.crossval import CANDIDATES, OUTER_FOLDS
from lightfence.eval.estimates import evaluate_estimates
from lightfence.eval.liars import evaluate_liars
from lightfence.eval.verdicts import (
    Case,
    honest_cases,
    judge,
    judge_with_f,
    relay_cases,
    truly_allowed,
)
from lightfence.geo.regions import Complement, Countries
from lightfence.rttdata import Dataset, load_dataset

DEFAULT_RESTRICTED = ("CN", "HK", "MO")

Step = Callable[[str], None]


@dataclass
class EvalResult:
    policy: Policy
    landmark_error_km: float
    cases: list[Case]
    verdicts: list[VerdictKind]
    relay_cases: list[Case]
    relay_verdicts: list[VerdictKind]
    estimates: dict[str, Any]
    """`evaluate_estimates` output: medians, p90s and per-target estimates."""
    tolerated: list[int] = field(default_factory=list)
    """f each honest verdict tolerated (from the policy's liar rule and its landmarks)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def tolerated_counts(self) -> dict[str, int]:
        """Honest targets per f actually tolerated, e.g. {"0": 9, "1": 140}."""
        counts = Counter(self.tolerated)
        return {str(f): counts[f] for f in sorted(counts)}

    def false_verified(self) -> list[Case]:
        return [
            c
            for c, v in zip(self.cases, self.verdicts, strict=True)
            if v is VerdictKind.VERIFIED and not truly_allowed(c, self.policy)
        ]

    def false_refuted(self) -> list[Case]:
        # The declared country is the data's label: a REFUTED for it is always wrong here.
        return [
            c for c, v in zip(self.cases, self.verdicts, strict=True) if v is VerdictKind.REFUTED
        ]

    def to_json(self) -> dict[str, Any]:
        counts = Counter(v.value for v in self.verdicts)
        est = self.estimates
        by_id = {t["id"]: t for t in est["per_target"]}
        return {
            "policy": self.policy.text,
            "bound": self.policy.bound.value,
            "landmark_error_km": self.landmark_error_km,
            "targets": len(self.cases),
            "verdicts": {k.value: counts.get(k.value, 0) for k in VerdictKind},
            "liars": self.policy.liars,
            "tolerated_liars": self.tolerated_counts(),
            "false_verified": len(self.false_verified()),
            "false_refuted": len(self.false_refuted()),
            "estimate_median_km": est["estimate_median_km"],
            "estimate_p90_km": est["estimate_p90_km"],
            "estimate_errors": "outer folds of a nested cross-validation (eval.crossval)",
            "estimate_cv": est["estimate_cv"],
            "baseline_shortest_ping_median_km": est["baseline_shortest_ping_median_km"],
            "baseline_cbg_median_km": est["baseline_cbg_median_km"],
            "baseline_cbg_p90_km": est["baseline_cbg_p90_km"],
            "relay_trials": len(self.relay_cases),
            "relay_false_verified": sum(
                1 for v in self.relay_verdicts if v is VerdictKind.VERIFIED
            ),
            **self.extra,
            "per_target": [
                {
                    "id": c.target.id,
                    "country": c.target.country_iso2,
                    "verdict": v.value,
                    "tolerated_liars": f,
                    "estimate_lat": by_id[c.target.id]["estimate_lat"],
                    "estimate_lon": by_id[c.target.id]["estimate_lon"],
                    "error_km": by_id[c.target.id]["error_km"],
                }
                for c, v, f in zip(self.cases, self.verdicts, self.tolerated, strict=True)
                if c.target.id in by_id
            ],
        }


def restricted_codes(policy: Policy) -> tuple[str, ...]:
    """Countries a relayed device may hide in: the policy's excluded set, else the default."""
    allowed = policy.allowed
    if isinstance(allowed, Complement) and isinstance(allowed.inner, Countries):
        return allowed.inner.codes
    return DEFAULT_RESTRICTED


def run_eval(
    policy: Policy,
    data_dir: str | Path | None = None,
    calibration_dir: str | Path | None = None,
    landmark_error_km: float = 0.0,
    step: Step | None = None,
    attack_liars: int = 0,
    outer_folds: int = OUTER_FOLDS,
    candidates: Sequence[EstimateSettings] = CANDIDATES,
) -> EvalResult:
    """Evaluate `policy` on a data set. Verdicts tolerate `policy.liars` lying landmarks;
    `attack_liars` landmarks lie in each liar trial (eval.liars)."""
    say = step or (lambda _msg: None)
    say("loading data")
    data: Dataset = load_dataset(data_dir)
    calibration = load_dataset(calibration_dir) if calibration_dir is not None else data
    say("honest verdicts")
    cases = honest_cases(data)
    verdicts, tolerated = judge_with_f(
        cases, policy, landmark_error_km, lambda c: c.target.country_iso2
    )
    say("relay attacks")
    restricted = restricted_codes(policy)
    relays = relay_cases(data, restricted)
    # A relayed device declares the relay's country; VERIFIED for it is always false.
    relay_verdicts = (
        judge(relays, policy, landmark_error_km, lambda c: c.target.country_iso2) if relays else []
    )
    say("lying landmarks")
    liar_summary = evaluate_liars(
        cases, relays, policy, policy.liars, attack_liars, landmark_error_km, honest_at_f=verdicts
    )
    say("position estimates")
    estimates = evaluate_estimates(
        data,
        calibration,
        progress=lambda done, total: say(f"position estimates (nested CV) {done}/{total}"),
        candidates=candidates,
        outer_folds=outer_folds,
    )
    return EvalResult(
        policy=policy,
        landmark_error_km=landmark_error_km,
        cases=cases,
        verdicts=verdicts,
        relay_cases=relays,
        relay_verdicts=relay_verdicts,
        estimates=estimates,
        tolerated=tolerated,
        extra=liar_summary.to_json(),
    )
