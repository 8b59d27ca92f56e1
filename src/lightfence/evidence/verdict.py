"""From a checked bundle to a verdict: the one place the evidence meets the physics core."""

from __future__ import annotations

from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import parse_policy
from lightfence.core.verdict import Verdict, decide
from lightfence.evidence.bundle import BundleCheck, accepted_min_rtts
from lightfence.units import Bound


def bundle_verdict(
    check: BundleCheck, policy_text: str, bound: Bound = Bound.VACUUM, claimed: str | None = None
) -> Verdict:
    """The verdict from the accepted records only. Rejected records never reach the core.

    Raises InvalidMeasurement when no record was accepted, PolicyError for a bad policy.
    """
    measurements = [
        Measurement(Landmark(e.id, e.latitude, e.longitude, e.position_error_km), rtt_ms)
        for e, rtt_ms in accepted_min_rtts(check)
    ]
    return decide(measurements, parse_policy(policy_text, bound), claimed)
