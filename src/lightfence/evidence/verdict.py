"""From a checked bundle to a verdict: the one place the evidence meets the physics core."""

from __future__ import annotations

from typing import Any

import numpy as np

from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import parse_policy
from lightfence.core.robust import (
    DEFAULT_LIARS,
    Liars,
    check_liars,
    landmark_groups,
    liars_per_device,
)
from lightfence.core.verdict import Verdict, decide
from lightfence.evidence.bundle import BundleCheck, BundleError, accepted_min_rtts
from lightfence.units import Bound


def bundle_verdict(
    check: BundleCheck,
    policy_text: str,
    bound: Bound = Bound.VACUUM,
    claimed: str | None = None,
    liars: Liars | str = DEFAULT_LIARS,
) -> Verdict:
    """The verdict from the accepted records only. Rejected records never reach the core.

    Raises InvalidMeasurement when no record was accepted, PolicyError for a bad policy.
    """
    measurements = [
        Measurement(Landmark(e.id, e.latitude, e.longitude, e.position_error_km), rtt_ms)
        for e, rtt_ms in accepted_min_rtts(check)
    ]
    return decide(measurements, parse_policy(policy_text, bound, liars), claimed)


def stated_liars(data: dict[str, Any]) -> Liars | None:
    """The tolerated-liar setting a verifier's bundle states (`policy.liars`), None if it states
    none. The setting is not signed, so it is checked against the bundle's own verdict: the
    setting must give the f the verdict states over the landmarks it decided on. Raises
    BundleError when it does not (the bundle was altered) or the setting is not one."""
    policy = data.get("policy")
    if not isinstance(policy, dict) or policy.get("liars") is None:
        return None
    try:
        liars = check_liars(policy["liars"])
    except ValueError as exc:
        raise BundleError(f"the bundle's policy.liars is not a setting: {exc}") from None
    verdict = data.get("verdict")
    if not isinstance(verdict, dict) or "tolerated_liars" not in verdict:
        return liars
    try:
        inputs = verdict["measurements"]
        lat = np.array([float(i["lat"]) for i in inputs], dtype=np.float64)
        lon = np.array([float(i["lon"]) for i in inputs], dtype=np.float64)
        stated_f = int(verdict["tolerated_liars"])
    except (KeyError, TypeError, ValueError):
        raise BundleError("the bundle's verdict has no readable measurements") from None
    start = np.array([0, len(lat)], dtype=np.int64)
    _, positions = landmark_groups(start, lat, lon)
    f = int(liars_per_device(liars, positions)[0])
    if f != stated_f:
        raise BundleError(
            f"the bundle was altered: its policy.liars {liars!r} gives f = {f} over its verdict's "
            f"{int(positions[0])} landmark(s), but the verdict states f = {stated_f}"
        )
    return liars
