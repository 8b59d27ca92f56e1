"""`lightfence eval --liars F --attack-liars K`: lying landmarks on real measured RTTs.

Attack trials: every relay case of eval.verdicts (a device truly in a restricted country answers
through an allowed target) is judged again with the K landmarks nearest the relay lying for it
(sim.liars): each reports the least RTT that keeps the relay inside its cap. Any VERIFIED is
false, and with K <= F there must be none.

Coverage cost: the honest targets judged at F and at 0; the cost is how many lose VERIFIED.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import Policy
from lightfence.core.robust import Liars
from lightfence.eval.verdicts import Case, judge, truly_allowed
from lightfence.sim.liars import liar_rtts


def attacked_cases(relays: Sequence[Case], attack_liars: int, policy: Policy) -> list[Case]:
    """Each relay case with its `attack_liars` landmarks nearest the relay lying for it."""
    out = []
    for case in relays:
        rtts, _ = liar_rtts(
            np.array([h.lat for h in case.landmarks]),
            np.array([h.lon for h in case.landmarks]),
            np.array(case.rtts_ms),
            case.target.lat,
            case.target.lon,
            attack_liars,
            policy.bound,
        )
        out.append(replace(case, rtts_ms=tuple(float(r) for r in rtts)))
    return out


@dataclass(frozen=True)
class LiarSummary:
    liars: Liars
    """f the verdicts tolerated ('auto': 1 for targets with at least 4 landmarks, else 0)."""
    attack_liars: int
    """K, the landmarks that lied in each attack trial."""
    trials: int
    false_verified: int
    """Attack trials that came out VERIFIED for a device outside the allowed region."""
    honest_verified_at_0: int
    honest_verified: int
    """Honest targets VERIFIED at f = liars (the same as at 0 when liars = 0)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "liars": self.liars,
            "attack_liars": self.attack_liars,
            "liar_trials": self.trials,
            "liar_false_verified": self.false_verified,
            "honest_verified_at_f0": self.honest_verified_at_0,
            "honest_verified_at_f": self.honest_verified,
            "verified_lost_to_liar_tolerance": self.honest_verified_at_0 - self.honest_verified,
        }


def evaluate_liars(
    honest: Sequence[Case],
    relays: Sequence[Case],
    policy: Policy,
    liars: Liars,
    attack_liars: int,
    landmark_error_km: float,
    honest_at_f: Sequence[VerdictKind] | None = None,
) -> LiarSummary:
    """Attack trials at f = liars, and the honest coverage at f = liars against f = 0.

    `honest_at_f`: the honest cases' verdicts at f = liars, if already computed.
    """
    at_f = replace(policy, liars=liars)
    at_0 = replace(policy, liars=0)

    def claim(c: Case) -> str | None:
        return c.target.country_iso2

    def verified(cases: Sequence[Case], pol: Policy) -> list[bool]:
        if not cases:
            return []
        return [v is VerdictKind.VERIFIED for v in judge(cases, pol, landmark_error_km, claim)]

    attacked = attacked_cases(relays, attack_liars, policy) if attack_liars > 0 else []
    false_verified = sum(
        1
        for c, ok in zip(attacked, verified(attacked, at_f), strict=True)
        if ok and not truly_allowed(c, policy)
    )
    if honest_at_f is not None:
        now = sum(v is VerdictKind.VERIFIED for v in honest_at_f)
    else:
        now = sum(verified(honest, at_f))
    base = now if liars == 0 else sum(verified(honest, at_0))
    return LiarSummary(
        liars=liars,
        attack_liars=attack_liars,
        trials=len(attacked),
        false_verified=false_verified,
        honest_verified_at_0=base,
        honest_verified=now,
    )
