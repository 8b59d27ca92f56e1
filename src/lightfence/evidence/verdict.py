"""From a checked bundle to a verdict: the one place the evidence meets the physics core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lightfence.core.measurement import InvalidMeasurement, Landmark, Measurement
from lightfence.core.policy import parse_policy
from lightfence.core.robust import Liars, check_liars, landmark_groups, liars_per_device
from lightfence.core.verdict import Verdict, VerdictKind, decide
from lightfence.evidence.bundle import (
    BundleCheck,
    BundleError,
    accepted_gpu_rtts,
    accepted_min_rtts,
)
from lightfence.geo.sphere import ELLIPSOID_EXCESS, great_circle_km
from lightfence.model.trust import Locates
from lightfence.units import Bound


def bundle_verdict(
    check: BundleCheck,
    policy_text: str,
    bound: Bound = Bound.VACUUM,
    claimed: str | None = None,
    liars: Liars | str = "auto",
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


def key_gpu_mismatch(key: Verdict, gpu: Verdict) -> KeyGpuMismatch | None:
    """A pair of caps, one from key rounds and one from GPU rounds, that are disjoint.

    Disjoint caps prove the key and the GPU are in different places. The test is sufficient, not
    necessary (regions can be disjoint with every pair of caps overlapping), so it never raises
    a false alarm: the great-circle distance is shrunk by the sphere's worst-case error against
    WGS84 before it is compared with the sum of the radii (which already include each
    landmark's position error).
    """
    k_radii, g_radii = key.cap_radii_km(), gpu.cap_radii_km()
    for km, kr in zip(key.measurements, k_radii, strict=True):
        for gm, gr in zip(gpu.measurements, g_radii, strict=True):
            d = float(
                great_circle_km(km.landmark.lat, km.landmark.lon, gm.landmark.lat, gm.landmark.lon)
            )
            if d / (1.0 + ELLIPSOID_EXCESS) > kr + gr:
                return KeyGpuMismatch(km.landmark.id, gm.landmark.id, d, float(kr), float(gr))
    return None


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
    liars: Liars | str = "auto",
) -> Verdict:
    """The verdict from accepted GPU-signed rounds only, each cap c·(RTT − S_floor)/2."""
    measurements = [
        Measurement(Landmark(e.id, e.latitude, e.longitude, e.position_error_km), rtt, floor)
        for e, rtt, floor in accepted_gpu_rtts(check)
    ]
    return decide(measurements, parse_policy(policy_text, bound, liars), claimed)


def device_verdict(
    check: BundleCheck,
    policy_text: str,
    bound: Bound = Bound.VACUUM,
    claimed: str | None = None,
    liars: Liars | str = "auto",
    required: Locates = Locates.KEY,
) -> DeviceVerdict:
    """Key verdict, GPU verdict, their mismatch, and the device's verdict from them.

    Raises InvalidMeasurement when there is no accepted round of either kind.
    """
    key = bundle_verdict(check, policy_text, bound, claimed, liars) if check.accepted else None
    gpu = (
        gpu_bundle_verdict(check, policy_text, bound, claimed, liars)
        if check.gpu_accepted
        else None
    )
    if key is None and gpu is None:
        raise InvalidMeasurement("no accepted round, key or GPU: nothing to decide from")
    mismatch = key_gpu_mismatch(key, gpu) if key is not None and gpu is not None else None
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
