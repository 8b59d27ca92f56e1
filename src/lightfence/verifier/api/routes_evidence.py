"""GET /devices/{id}/evidence: the evidence bundle behind a device's latest verdict.

The bundle is the agent's format (evidence.bundle): the device identity as enrolled, the signed
records the verdict used, and the landmarks' registry entries, so an auditor can re-check it
offline with `lightfence verify` against a landmark registry they trust.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from lightfence.evidence.bundle import EvidenceBundle
from lightfence.landmark.registry import LandmarkEntry
from lightfence.protocol.record import MeasurementRecord
from lightfence.verifier import queries, registry
from lightfence.verifier.api.deps import PrincipalDep, ServiceDep
from lightfence.verifier.clock import now_ns
from lightfence.verifier.errors import NotFound
from lightfence.verifier.models import LandmarkRow, RecordRow

router = APIRouter(tags=["devices"])


@router.get(
    "/devices/{device_id}/evidence",
    summary="Evidence bundle of the latest verdict (for `lightfence verify`)",
)
def evidence(device_id: str, service: ServiceDep, who: PrincipalDep) -> JSONResponse:
    with service.read() as session:
        row = registry.get_device(session, device_id, who)
        latest = queries.latest_verdict(session, device_id)
        if latest is None or not latest.inputs:
            raise NotFound(f"device {device_id} has no verdict yet, so no evidence to bundle")
        ids = [i["record_id"] for i in latest.inputs]
        records = session.execute(select(RecordRow).where(RecordRow.id.in_(ids))).scalars().all()
        lm_ids = sorted({r.landmark_id for r in records})
        landmarks = session.execute(
            select(LandmarkRow).where(LandmarkRow.id.in_(lm_ids)).order_by(LandmarkRow.id)
        ).scalars()
        bundle = EvidenceBundle(
            device=registry.device_identity(row),
            records=tuple(
                MeasurementRecord.from_json_dict(r.body)
                for r in sorted(records, key=lambda r: r.id)
            ),
            landmarks=tuple(
                LandmarkEntry(
                    id=lm.id,
                    public_key=bytes.fromhex(lm.public_key),
                    latitude=lm.lat,
                    longitude=lm.lon,
                    position_error_km=lm.position_error_km,
                    operator=lm.operator,
                )
                for lm in landmarks
            ),
            created_at_unix_ns=now_ns(),
        )
    return JSONResponse(
        bundle.to_json_dict(),
        headers={
            "content-disposition": f'attachment; filename="evidence-{device_id}.json"',
        },
    )
