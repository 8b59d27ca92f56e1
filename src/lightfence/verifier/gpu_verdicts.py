"""GPU verdicts in the service: a device's GPU-signed rounds beside its key records.

Which GPU rounds count follows the key records' rules (verifier.verdicts, core.freshness):
stored rounds of the GPU the licence enrols now, not found invalid by batch re-verification
(fleet.reverify), from landmarks `active` now, measured since the landmark's current position,
within `verdict_window_s` before the device's newest GPU round, each grown by the movement
allowance, the tightest per landmark by RTT - S_floor. The device's verdict then comes from
`evidence.verdict.combine_verdicts`, the rule `lightfence verify` applies to a bundle: the GPU
verdict when there are GPU rounds (a `gpu` verdict is computed from GPU-signed rounds only),
INCONSISTENT with a `key-gpu-mismatch` alert when the key's caps and the GPU's are disjoint,
UNVERIFIED when the licence requires `gpu` and there are none.

Devices without GPU rounds, whose licence requires only `key`, keep the batch engine's verdict
untouched (this module adds nothing to their cost).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lightfence.core.freshness import WindowRecord, verdict_inputs
from lightfence.core.kinds import Reason
from lightfence.core.policy import parse_policy
from lightfence.core.verdict import decide
from lightfence.evidence.verdict import combine_verdicts
from lightfence.model.trust import Locates
from lightfence.units import Bound
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import DeviceRow, GpuRoundRow, LandmarkRow
from lightfence.verifier.verdicts import Decided, Pending, measurements_of

KEY_GPU_MISMATCH = "key-gpu-mismatch"

_COUNTING = (
    # A round of the GPU enrolled now: after a licence names another GPU (a swap), the old
    # chip's rounds locate the old chip, not this device's.
    GpuRoundRow.gpu_id == DeviceRow.gpu_id,
    GpuRoundRow.invalid_ns.is_(None),  # failed re-verification (fleet.reverify)
)


def attach_gpu_inputs(
    session: Session,
    config: VerifierConfig,
    pending: list[Pending],
) -> list[Pending]:
    """Each pending device with its GPU verdict inputs (None when it has no GPU rounds)."""
    ids = [p.device_id for p in pending]
    newest: dict[str, int] = {}
    for k in range(0, len(ids), 500):
        newest.update(
            session.execute(
                select(GpuRoundRow.device_id, func.max(GpuRoundRow.measured_ns))
                .join(DeviceRow, DeviceRow.id == GpuRoundRow.device_id)
                .where(GpuRoundRow.device_id.in_(ids[k : k + 500]), *_COUNTING)
                .group_by(GpuRoundRow.device_id)
            ).all()
        )
    if not newest:
        return pending
    active = select(LandmarkRow).where(LandmarkRow.status == "active")
    landmarks = {lm.id: lm for lm in session.execute(active).scalars()}
    window_ns = int(config.verdict_window_s * 1e9)
    skew_ns = int(config.max_clock_skew_s * 1e9)
    by_device: dict[str, list[WindowRecord]] = defaultdict(list)
    with_rounds = sorted(newest)
    for k in range(0, len(with_rounds), 500):
        chunk = with_rounds[k : k + 500]
        oldest = min(newest[d] for d in chunk) - window_ns
        rows = session.execute(
            select(
                GpuRoundRow.id,
                GpuRoundRow.device_id,
                GpuRoundRow.landmark_id,
                GpuRoundRow.rtt_ns,
                GpuRoundRow.floor_ns,
                GpuRoundRow.measured_ns,
            )
            .join(DeviceRow, DeviceRow.id == GpuRoundRow.device_id)
            .where(GpuRoundRow.device_id.in_(chunk), GpuRoundRow.measured_ns >= oldest, *_COUNTING)
        )
        for rid, did, lid, rtt_ns, floor_ns, measured in rows:
            lm = landmarks.get(lid)
            # As for key records: a round taken before the landmark's current position was
            # registered was measured from elsewhere; a flagged landmark's rounds do not count.
            if lm is None or (lm.position_since_ns and measured < lm.position_since_ns + skew_ns):
                continue
            by_device[did].append(
                WindowRecord(
                    rid, lid, lm.lat, lm.lon, lm.position_error_km, rtt_ns, measured, floor_ns
                )
            )
    out = []
    for p in pending:
        if p.device_id not in newest:
            out.append(p)
            continue
        inputs = verdict_inputs(
            by_device[p.device_id],
            newest[p.device_id],
            Bound.VACUUM,  # ordering only: the tightest cap per landmark is the same at any speed
            config.verdict_window_s,
            config.max_device_speed_km_per_h,
        )
        for i in inputs:
            i["gpu_round_id"] = i.pop("record_id")
        out.append(replace(p, gpu_inputs=inputs or None, gpu_as_of_ns=newest[p.device_id]))
    return out


def refine(decided: list[Decided], config: VerifierConfig) -> list[Decided]:
    """The device verdict for each device that has GPU rounds or must be located by its GPU."""
    return [_refine(d, config) for d in decided]


def _refine(d: Decided, config: VerifierConfig) -> Decided:
    p = d.pending
    required = Locates(p.require_locates)
    if not p.gpu_inputs and required is Locates.KEY:
        return d
    if not p.gpu_inputs and not p.inputs:
        return d  # nothing measured at all: the batch verdict (no measurements) stands
    policy = parse_policy(p.policy, p.bound, p.liars)
    key = decide(measurements_of(p.inputs), policy, p.claimed) if p.inputs else None
    gpu = decide(measurements_of(p.gpu_inputs), policy, p.claimed) if p.gpu_inputs else None
    dv = combine_verdicts(
        key,
        gpu,
        p.as_of_ns if p.inputs else None,
        p.gpu_as_of_ns,
        required,
        config.max_device_speed_km_per_h,
    )
    # A verdict is as old as the rounds it rests on: a gpu verdict's time is its newest GPU
    # round's, never a fresher key record's (tokens downgrade an old VERIFIED by this time).
    as_of = p.gpu_as_of_ns if dv.locates is Locates.GPU and p.gpu_as_of_ns else p.as_of_ns
    extra: dict[str, Any] = {
        "pending": replace(p, as_of_ns=as_of),
        "locates": dv.locates.value,
        "key_kind": None if key is None or gpu is None else key.kind.value,
        "gpu_kind": None if gpu is None else gpu.kind.value,
    }
    if dv.mismatch is not None:
        # The union of key and GPU caps has no common point; no landmark is to blame for it.
        return replace(
            d,
            kind=dv.kind,
            reason=Reason.EMPTY_FEASIBLE,
            text=dv.reason,
            tolerated_liars=0,
            implicated=(),
            alert=KEY_GPU_MISMATCH,
            **extra,
        )
    if gpu is not None:
        return replace(
            d,
            kind=gpu.kind,
            reason=gpu.reason_code,
            text=gpu.reason,
            tolerated_liars=gpu.tolerated_liars,
            implicated=gpu.implicated,
            **extra,
        )
    return replace(d, kind=dv.kind, text=dv.reason, **extra)
