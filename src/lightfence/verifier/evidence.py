"""Evidence bundles from the verifier: what an auditor needs to re-check a verdict offline.

The bundle is the format of `lightfence.evidence.bundle` (device identity, the records, the
landmark registry entries with their keys), so `lightfence verify BUNDLE` reads it as it is.
The verifier adds three keys that the bundle reader ignores: `policy` (what was decided, with
its tolerated-liar setting `liars`, which `lightfence verify` recomputes with),
`verdict` (the verifier's verdict, with the exact measurements it decided on, including each
record's movement allowance) and `issued_by` (the audit head at issue time).

The records (and GPU rounds, with their evidence, in `gpu_rounds`) are those of the device's
latest verdict. Recomputed offline with the registry's
survey errors only, the caps can only be tighter than the verifier's (no movement allowance), so
the verifier's verdict is never more confident than what the bundle itself supports.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lightfence.evidence.bundle import EvidenceBundle
from lightfence.model.registry import LandmarkEntry, registry_json
from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord
from lightfence.protocol.record import MeasurementRecord
from lightfence.verifier.auth import Principal
from lightfence.verifier.errors import Conflict
from lightfence.verifier.logs import log
from lightfence.verifier.models import (
    AuditHeadRow,
    DeviceRow,
    GpuRoundRow,
    LandmarkRow,
    RecordRow,
    VerdictRow,
)
from lightfence.verifier.queries import latest_verdict, verdict_dict
from lightfence.verifier.registry import device_identity, get_device


def landmark_entry(row: LandmarkRow) -> LandmarkEntry:
    return LandmarkEntry(
        id=row.id,
        public_key=bytes.fromhex(row.public_key),
        latitude=row.lat,
        longitude=row.lon,
        position_error_km=row.position_error_km,
        operator=row.operator,
        address=row.address,
        gpu_address=row.gpu_address,
    )


def active_landmarks(session: Session) -> list[LandmarkEntry]:
    """The active landmarks as registry entries, by id.

    A row the registry format cannot hold (stored before registration checked for it: a
    longitude past 180, an over-long id) is left out and logged, so one bad row cannot fail
    every agent's registry."""
    stmt = select(LandmarkRow).where(LandmarkRow.status == "active").order_by(LandmarkRow.id)
    out = []
    for row in session.execute(stmt).scalars():
        try:
            out.append(landmark_entry(row))
        except ValueError as exc:  # RegistryError
            log("landmark_unlisted", logging.ERROR, landmark_id=row.id[:80], error=str(exc)[:200])
    return out


def registry_document(session: Session) -> dict[str, Any]:
    """The landmark registry file (landmark.registry format) for agents and auditors."""
    return registry_json(active_landmarks(session))


def _gpu_rounds(
    session: Session, inputs: list[dict[str, Any]]
) -> tuple[tuple[GpuRoundRecord, GpuEvidence], ...]:
    """The GPU rounds a verdict decided on, with their evidence, for `lightfence verify`."""
    ids = [int(i["gpu_round_id"]) for i in inputs]
    rows = {
        r.id: r
        for r in session.execute(select(GpuRoundRow).where(GpuRoundRow.id.in_(ids))).scalars()
    }
    return tuple(
        (GpuRoundRecord.from_json_dict(rows[i].body), GpuEvidence.from_json_dict(rows[i].evidence))
        for i in ids
    )


def device_bundle(session: Session, device_id: str, who: Principal, now_ns: int) -> dict[str, Any]:
    device = get_device(session, device_id, who)
    verdict = latest_verdict(session, device_id)
    if verdict is None:
        raise Conflict(
            f"device {device_id} has no verdict yet: submit its records first (the verifier "
            "decides within a second of their arrival)"
        )
    return verdict_bundle(session, device, verdict, now_ns)


def verdict_bundle(
    session: Session, device: DeviceRow, verdict: VerdictRow, now_ns: int
) -> dict[str, Any]:
    """The bundle of one stored verdict of `device` (the compliance report bundles the verdict
    in force at the end of its window, which need not be the latest)."""
    ids = [int(i["record_id"]) for i in verdict.inputs]
    rows = {
        r.id: r for r in session.execute(select(RecordRow).where(RecordRow.id.in_(ids))).scalars()
    }
    records = tuple(MeasurementRecord.from_json_dict(rows[i].body) for i in ids)
    gpu_rounds = _gpu_rounds(session, verdict.gpu_inputs or [])
    lids = sorted({r.landmark_id for r in records} | {r.landmark_id for r, _ in gpu_rounds})
    landmarks = tuple(
        landmark_entry(r)
        for r in session.execute(select(LandmarkRow).where(LandmarkRow.id.in_(lids))).scalars()
    )
    bundle = EvidenceBundle(device_identity(device), records, landmarks, now_ns, gpu_rounds)
    head = session.get(AuditHeadRow, 1)
    out = bundle.to_json_dict()
    out["policy"] = {
        "policy": verdict.policy,
        "bound": verdict.bound,
        "claimed": verdict.claimed,
        "liars": verdict.liars,
    }
    out["verdict"] = verdict_dict(verdict)
    out["issued_by"] = {
        "service": "lightfence verifier",
        "audit_seq": None if head is None else head.seq,
        "audit_head": None if head is None else head.hash,
    }
    return out
