"""From a checked bundle to a verdict: the one place the evidence meets the physics core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lightfence.core.batch import cap_radius_rad
from lightfence.core.freshness import MAX_DEVICE_SPEED_KM_PER_H, VERDICT_WINDOW_S, measurement_of
from lightfence.core.measurement import InvalidMeasurement
from lightfence.core.policy import parse_policy
from lightfence.core.robust import DEFAULT_LIARS, Liars
from lightfence.core.verdict import Verdict, VerdictKind, decide, table_for
from lightfence.evidence.bundle import BundleCheck
from lightfence.geo.conformal import G_MAX_RAD_PER_KM, model_vectors
from lightfence.geo.sphere import Float64Array, angle_rad, geodesic_km
from lightfence.model.trust import Locates
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
    inputs = check.verdict_inputs(bound, window_s, speed_km_per_h)
    measurements = [measurement_of(i) for i in inputs]
    return decide(measurements, parse_policy(policy_text, bound, liars), claimed)


@dataclass(frozen=True)
class KeyGpuMismatch:
    """A key cap and a GPU cap that cannot both hold: the key answers far from the GPU."""

    key_landmark: str
    gpu_landmark: str
    distance_km: float
    key_radius_km: float
    gpu_radius_km: float

    def text(self) -> str:
        return (
            f"key-gpu-mismatch: the key answered within {self.key_radius_km:,.0f} km of "
            f"{self.key_landmark} and the GPU within {self.gpu_radius_km:,.0f} km of "
            f"{self.gpu_landmark}, {self.distance_km:,.0f} km apart: the key is not where the "
            "GPU is (moved or cloned key)"
        )


def key_gpu_mismatch(
    key: Verdict, gpu: Verdict, allowance_km: float = 0.0
) -> KeyGpuMismatch | None:
    """A pair of caps, one from key rounds and one from GPU rounds, that are disjoint.

    Disjoint caps prove the key and the GPU are in different places. The test is sufficient, not
    necessary (regions can be disjoint with every pair of caps overlapping), so it never raises
    a false alarm. It is made on the verdict engine's own caps (exact bounds on WGS84, landmark
    position error and movement allowance included): two caps on the model sphere are disjoint
    when their centres are further apart than the sum of their angles, plus `allowance_km` (how
    far the device could have moved between the key rounds and the GPU rounds) as an angle that
    can only come out too large.
    """
    k_c, k_r = _caps(key)
    g_c, g_r = _caps(gpu)
    sep = angle_rad(k_c[:, None, :], g_c[None, :, :])
    apart = sep > k_r[:, None] + g_r[None, :] + allowance_km * G_MAX_RAD_PER_KM
    if not apart.any():
        return None
    i, j = (int(x) for x in np.argwhere(apart)[0])
    km, gm = key.measurements[i].landmark, gpu.measurements[j].landmark
    return KeyGpuMismatch(
        km.id,
        gm.id,
        geodesic_km(km.lat, km.lon, gm.lat, gm.lon),
        key.cap_radii_km()[i],
        gpu.cap_radii_km()[j],
    )


def _caps(verdict: Verdict) -> tuple[Float64Array, Float64Array]:
    """A verdict's caps as the engine draws them: centres on the model sphere, angles."""
    table = table_for(verdict.measurements)
    return model_vectors(table.lat_deg, table.lon_deg), cap_radius_rad(table, verdict.bound)


@dataclass(frozen=True)
class DeviceVerdict:
    """What a device's evidence proves, and what it locates (docs/trust.md).

    `kind` is the device's verdict: the GPU verdict when there are GPU-signed rounds, else the
    key verdict; INCONSISTENT when key and GPU are provably apart; never VERIFIED when the
    requirement asks for `gpu` and there is no GPU verdict.
    """

    kind: VerdictKind
    locates: Locates
    reason: str
    key: Verdict | None
    gpu: Verdict | None
    mismatch: KeyGpuMismatch | None
    required: Locates

    @property
    def alerts(self) -> tuple[str, ...]:
        return ("key-gpu-mismatch",) if self.mismatch is not None else ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.kind.value,
            "locates": self.locates.value,
            "reason": self.reason,
            "required_locates": self.required.value,
            "alerts": list(self.alerts),
            "key": None if self.key is None else {**self.key.to_dict(), "locates": "key"},
            "gpu": None if self.gpu is None else {**self.gpu.to_dict(), "locates": "gpu"},
            "mismatch": None if self.mismatch is None else self.mismatch.text(),
        }


def gpu_bundle_verdict(
    check: BundleCheck,
    policy_text: str,
    bound: Bound = Bound.VACUUM,
    claimed: str | None = None,
    liars: Liars | str = DEFAULT_LIARS,
    window_s: float = VERDICT_WINDOW_S,
    speed_km_per_h: float = MAX_DEVICE_SPEED_KM_PER_H,
) -> Verdict:
    """The verdict from accepted GPU-signed rounds only, each cap c·(RTT − S_floor)/2."""
    measurements = [measurement_of(i) for i in check.gpu_verdict_inputs(window_s, speed_km_per_h)]
    return decide(measurements, parse_policy(policy_text, bound, liars), claimed)


def device_verdict(
    check: BundleCheck,
    policy_text: str,
    bound: Bound = Bound.VACUUM,
    claimed: str | None = None,
    liars: Liars | str = DEFAULT_LIARS,
    required: Locates = Locates.KEY,
    window_s: float = VERDICT_WINDOW_S,
    speed_km_per_h: float = MAX_DEVICE_SPEED_KM_PER_H,
) -> DeviceVerdict:
    """Key verdict, GPU verdict, their mismatch, and the device's verdict from them.

    Raises InvalidMeasurement when there is no accepted round of either kind.
    """
    key = (
        bundle_verdict(check, policy_text, bound, claimed, liars, window_s, speed_km_per_h)
        if check.accepted
        else None
    )
    gpu = (
        gpu_bundle_verdict(check, policy_text, bound, claimed, liars, window_s, speed_km_per_h)
        if check.gpu_accepted
        else None
    )
    if key is None and gpu is None:
        raise InvalidMeasurement("no accepted round, key or GPU: nothing to decide from")
    key_ns, gpu_ns = check.newest_ns()
    return combine_verdicts(key, gpu, key_ns, gpu_ns, required, speed_km_per_h)


def combine_verdicts(
    key: Verdict | None,
    gpu: Verdict | None,
    key_newest_ns: int | None,
    gpu_newest_ns: int | None,
    required: Locates = Locates.KEY,
    speed_km_per_h: float = MAX_DEVICE_SPEED_KM_PER_H,
) -> DeviceVerdict:
    """The device's verdict from its key verdict and its GPU verdict (either may be missing,
    not both): the rule `lightfence verify` and the verifier service share.

    INCONSISTENT when the two are provably apart (allowing for movement at `speed_km_per_h`
    between the newest key record and the newest GPU round); else the GPU verdict when there is
    one; else the key verdict, or UNVERIFIED when `required` is gpu.
    """
    if key is None and gpu is None:
        raise InvalidMeasurement("no accepted round, key or GPU: nothing to decide from")
    mismatch = None
    if key is not None and gpu is not None:
        gap_h = abs((key_newest_ns or 0) - (gpu_newest_ns or 0)) / 3.6e12
        mismatch = key_gpu_mismatch(key, gpu, speed_km_per_h * gap_h)
    if mismatch is not None:
        kind, locates, reason = VerdictKind.INCONSISTENT, Locates.GPU, mismatch.text()
    elif gpu is not None:
        kind, locates, reason = gpu.kind, Locates.GPU, gpu.reason
    elif required is Locates.GPU:
        assert key is not None
        kind, locates = VerdictKind.UNVERIFIED, Locates.KEY
        reason = (
            f"the policy requires a verdict that locates the GPU, and there are no GPU-signed "
            f"rounds; the key alone was {key.kind.value} (a key file can be moved)"
        )
    else:
        assert key is not None
        kind, locates, reason = key.kind, Locates.KEY, key.reason
    return DeviceVerdict(kind, locates, reason, key, gpu, mismatch, required)
