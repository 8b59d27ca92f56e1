"""Fleet-wide views and operations: status, alerts, rejections, recompute, audit, metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lightfence.verifier import alerts, queries
from lightfence.verifier.alerts import AlertKind
from lightfence.verifier.api.deps import (
    FleetReaderDep,
    PrincipalDep,
    ServiceDep,
    WriterDep,
    require,
)
from lightfence.verifier.api.responses import (
    ERRORS,
    AlertOut,
    AuditVerifyOut,
    HealthOut,
    RecomputeOut,
    RejectionOut,
    StatusOut,
)
from lightfence.verifier.audit_verify import verify_chain
from lightfence.verifier.auth import Role
from lightfence.verifier.clock import now_ns
from lightfence.verifier.errors import NotFound
from lightfence.verifier.models import AlertRow, DeviceRow

router = APIRouter(responses=ERRORS)

MAX_ID = 2**63 - 1
"""Largest row id the databases store (BIGINT): larger path ids are simply not found."""


@router.get(
    "/healthz", tags=["operations"], summary="Liveness (no token)", response_model=HealthOut
)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics (no token)",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(service: ServiceDep) -> Response:
    with service.read() as session:
        service.metrics.pending.set(queries.summary(session)["pending_verdicts"])
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/status", tags=["operations"], summary="Fleet summary", response_model=StatusOut)
def status(service: ServiceDep, who: PrincipalDep) -> dict[str, Any]:
    require(who, Role.ADMIN, Role.AUDITOR)
    with service.read() as session:
        return queries.summary(session)


def _alerts(
    service: ServiceDep, who: PrincipalDep, kind: AlertKind | None, open_only: bool, limit: int
) -> list[dict[str, Any]]:
    with service.read() as session:
        return queries.list_alerts(
            session, who, kind=kind.value if kind else None, open_only=open_only, limit=limit
        )


@router.get(
    "/alerts", tags=["alerts"], summary="Alerts, newest first", response_model=list[AlertOut]
)
def list_alerts(
    service: ServiceDep,
    who: FleetReaderDep,
    kind: AlertKind | None = None,
    open: bool = False,
    limit: int = Query(queries.MAX_PAGE, ge=1, le=queries.MAX_PAGE),
) -> list[dict[str, Any]]:
    return _alerts(service, who, kind, open, limit)


@router.get(
    "/alerts.csv",
    tags=["alerts"],
    summary="Alerts as CSV",
    responses={200: {"content": {"text/csv": {}}, "description": "one alert a row"}},
)
def alerts_csv(
    service: ServiceDep, who: FleetReaderDep, kind: AlertKind | None = None, open: bool = False
) -> PlainTextResponse:
    rows = _alerts(service, who, kind, open, 100 * queries.MAX_PAGE)
    return PlainTextResponse(
        alerts.to_csv(rows),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="lightfence-alerts.csv"'},
    )


@router.post(
    "/alerts/{alert_id}/ack",
    tags=["alerts"],
    summary="Acknowledge an alert",
    response_model=AlertOut,
)
def ack(
    alert_id: Annotated[int, Path(ge=1, le=MAX_ID)], service: ServiceDep, who: WriterDep
) -> dict[str, Any]:
    require(who, Role.ADMIN, Role.OPERATOR)
    with service.write() as session:
        row = session.get(AlertRow, alert_id)
        if row is not None and who.role is Role.OPERATOR:
            device = session.get(DeviceRow, row.device_id) if row.device_id else None
            if device is None or device.operator != who.owner:
                raise NotFound(f"no alert {alert_id} visible to this token")
        row = alerts.acknowledge(session, alert_id, who.actor, now_ns())
        return alerts.alert_dict(row)


@router.get(
    "/rejections",
    tags=["records"],
    summary="Rejected records (possible spoofing), one row per token, landmark, device, reason",
    response_model=list[RejectionOut],
)
def rejections(
    service: ServiceDep,
    who: PrincipalDep,
    device_id: str | None = None,
    limit: int = Query(100, ge=1, le=queries.MAX_PAGE),
) -> list[dict[str, Any]]:
    require(who, Role.ADMIN, Role.AUDITOR, Role.OPERATOR)
    with service.read() as session:
        return queries.rejections(session, who, limit, device_id)


@router.post(
    "/verdicts/recompute",
    tags=["operations"],
    summary="Recompute pending verdicts now",
    response_model=RecomputeOut,
)
def recompute(service: ServiceDep, who: WriterDep) -> dict[str, int]:
    require(who, Role.ADMIN)
    return {"verdicts": service.recompute_all()}


@router.get(
    "/audit/verify",
    tags=["operations"],
    summary="Check the audit hash chain and the state tables against it",
    response_model=AuditVerifyOut,
)
def audit_verify(service: ServiceDep, who: PrincipalDep) -> dict[str, Any]:
    require(who, Role.ADMIN, Role.AUDITOR)
    with service.read() as session:
        report = verify_chain(session)
    return {
        "ok": report.ok,
        "entries": report.entries,
        "head_hash": report.head_hash,
        "chains": report.chains,
        "problems": report.problems,
    }
