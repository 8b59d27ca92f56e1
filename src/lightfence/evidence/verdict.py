"""From a checked bundle to a verdict: the one place the evidence meets the physics core."""

from __future__ import annotations

from lightfence.core.freshness import MAX_DEVICE_SPEED_KM_PER_H, VERDICT_WINDOW_S
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import parse_policy
from lightfence.core.robust import DEFAULT_LIARS, Liars
from lightfence.core.verdict import Verdict, decide
from lightfence.evidence.bundle import BundleCheck
from lightfence.units import Bound


def bundle_verdict(
    check: BundleCheck,
    policy_text: str,
    bound: Bound = Bound.VACUUM,
    claimed: str | None = None,
    liars: Liars | str = DEFAULT_LIARS,
    window_s: float = VERDICT_WINDOW_S,
    speed_km_per_h: float = MAX_DEVICE_SPEED_KM_PER_H,
) -> Verdict:
    """The verdict from the accepted records only, chosen and widened as the verifier service
    chooses them (BundleCheck.verdict_inputs). Rejected records never reach the core; the
    policy and liar setting are the caller's, never the bundle's (which are unsigned).

    Raises InvalidMeasurement when no record was accepted, PolicyError for a bad policy.
    """
    measurements = [
        Measurement(
            Landmark(i["landmark_id"], i["lat"], i["lon"], i["position_error_km"]), i["rtt_ms"]
        )
        for i in check.verdict_inputs(bound, window_s, speed_km_per_h)
    ]
    return decide(measurements, parse_policy(policy_text, bound, liars), claimed)
