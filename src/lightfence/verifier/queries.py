"""Read-side views for the API, the dashboard and `lightfence status`. No writes here."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lightfence.model.policy import PolicySpec, parse_policy_spec
from lightfence.model.trust import Locates
from lightfence.units import Bound
from lightfence.verifier import audit
from lightfence.verifier.alerts import alert_dict
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.clock import iso
from lightfence.verifier.models import (
    AlertRow,
    AuditHeadRow,
    DeviceRow,
    GpuRoundRow,
    LandmarkRow,
    RecordRow,
    RejectionRow,
    VerdictRow,
)
from lightfence.verifier.registry import licence_of
from lightfence.verifier.verdicts import verdict_of

MAX_PAGE = 1000


def verdict_dict(row: VerdictRow, *, geojson: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "device_id": row.device_id,
        "verdict": row.kind,
        "locates": row.locates or "key",
        "key_verdict": row.key_kind,
        "gpu_verdict": row.gpu_kind,
        "alerts": [row.alert] if row.alert else [],
        "gpu_rounds": [i["gpu_round_id"] for i in row.gpu_inputs or ()],
        "gpu_measurements": row.gpu_inputs or [],
        "reason": row.reason,
        "policy": row.policy,
        "bound": row.bound,
        "claimed": row.claimed,
        "liars": row.liars,
        "tolerated_liars": row.tolerated_liars,
        "policy_spec": _policy_json(row),
        "implicated_landmarks": list(row.implicated or ()),
        "as_of": iso(row.as_of_ns),
        "computed_at": iso(row.computed_ns),
        "records": [i["record_id"] for i in row.inputs],
        "measurements": row.inputs,
    }
    if geojson:
        verdict = verdict_of(row)
        out["feasible_geojson"] = None if verdict is None else verdict.feasible_geojson()
    return out


def verdict_policy(row: VerdictRow) -> PolicySpec:
    """The policy a stored verdict holds under, as a structure: its region, its bound, the
    liars it tolerated as the count it resolved to (never 'auto'), and what it locates. What
    verdict tokens carry and gates compare. PolicyError if the stored text cannot be read."""
    return replace(
        parse_policy_spec(row.policy),
        bound=Bound(row.bound),
        liars=int(row.tolerated_liars or 0),
        locates=Locates(row.locates or "key"),
    )


def _policy_json(row: VerdictRow) -> dict[str, Any] | None:
    try:
        return verdict_policy(row).to_json_dict()
    except ValueError:  # PolicyError, or a bound or locates this version does not know
        return None


def device_dict(row: DeviceRow, latest: VerdictRow | None) -> dict[str, Any]:
    return {
        "device_id": row.id,
        "operator": row.operator,
        "provider": row.provider,
        "trust_level": row.trust_level,
        "key_id": row.key_id,
        "attributes": row.attributes,
        "licence": licence_of(row),
        "enrolled_at": iso(row.enrolled_ns),
        "last_record_at": iso(row.last_record_ns),
        "verdict_pending": row.needs_verdict,
        "latest_verdict": None if latest is None else verdict_dict(latest),
        "retired_at": iso(row.retired_ns) if row.retired_ns else None,
    }


def _visible(stmt: Any, who: Principal) -> Any:
    if who.role is Role.OPERATOR:
        return stmt.where(DeviceRow.operator == who.owner)
    return stmt


def list_devices(session: Session, who: Principal) -> list[dict[str, Any]]:
    latest = (
        select(VerdictRow.device_id, func.max(VerdictRow.id).label("vid"))
        .group_by(VerdictRow.device_id)
        .subquery()
    )
    stmt = _visible(
        select(DeviceRow, VerdictRow)
        .outerjoin(latest, latest.c.device_id == DeviceRow.id)
        .outerjoin(VerdictRow, VerdictRow.id == latest.c.vid)
        .order_by(DeviceRow.id),
        who,
    )
    return [device_dict(d, v) for d, v in session.execute(stmt)]


def latest_verdict(session: Session, device_id: str) -> VerdictRow | None:
    return session.execute(
        select(VerdictRow)
        .where(VerdictRow.device_id == device_id)
        .order_by(VerdictRow.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def verdict_history(
    session: Session, device_id: str, limit: int, *, geojson: str = "latest"
) -> list[dict[str, Any]]:
    """Newest first. `geojson`: 'none', 'latest' (only the newest carries its region) or 'all'."""
    rows = (
        session.execute(
            select(VerdictRow)
            .where(VerdictRow.device_id == device_id)
            .order_by(VerdictRow.id.desc())
            .limit(min(limit, MAX_PAGE))
        )
        .scalars()
        .all()
    )
    return [
        verdict_dict(r, geojson=geojson == "all" or (geojson == "latest" and i == 0))
        for i, r in enumerate(rows)
    ]


def record_dict(row: RecordRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "record_hash": row.record_hash,
        "received_at": iso(row.received_ns),
        "submitted_by": row.submitted_by,
        "record": row.body,
        "excluded_at": iso(row.invalid_ns),
        "excluded_reason": row.invalid_reason,
    }


def device_records(session: Session, device_id: str, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(RecordRow)
        .where(RecordRow.device_id == device_id)
        .order_by(RecordRow.id.desc())
        .limit(min(limit, MAX_PAGE))
    ).scalars()
    return [record_dict(r) for r in rows]


def rejections(
    session: Session, who: Principal, limit: int, device_id: str | None = None
) -> list[dict[str, Any]]:
    stmt = (
        select(RejectionRow)
        .order_by(RejectionRow.received_ns.desc(), RejectionRow.id.desc())
        .limit(min(limit, MAX_PAGE))
    )
    if device_id is not None:
        stmt = stmt.where(RejectionRow.device_id == device_id)
    if who.role is Role.OPERATOR:
        mine = select(DeviceRow.id).where(DeviceRow.operator == who.owner)
        stmt = stmt.where(RejectionRow.device_id.in_(mine))
    return [
        {
            "id": r.id,
            "count": r.count or 1,
            "first_received_at": iso(r.first_received_ns or r.received_ns),
            "received_at": iso(r.received_ns),
            "reason": r.reason,
            "detail": r.detail,
            "device_id": r.device_id,
            "landmark_id": r.landmark_id,
            "record_hash": r.record_hash,
            "submitted_by": r.submitted_by,
        }
        for r in session.execute(stmt).scalars()
    ]


def list_alerts(
    session: Session,
    who: Principal,
    *,
    kind: str | None = None,
    open_only: bool = False,
    limit: int = MAX_PAGE,
) -> list[dict[str, Any]]:
    stmt = select(AlertRow).order_by(AlertRow.id.desc()).limit(min(limit, 100 * MAX_PAGE))
    if kind:
        stmt = stmt.where(AlertRow.kind == kind)
    if open_only:
        stmt = stmt.where(AlertRow.acknowledged_ns.is_(None))
    if who.role is Role.OPERATOR:
        mine = select(DeviceRow.id).where(DeviceRow.operator == who.owner)
        stmt = stmt.where(AlertRow.device_id.in_(mine))
    return [alert_dict(r) for r in session.execute(stmt).scalars()]


def summary(session: Session) -> dict[str, Any]:
    """Fleet summary for `lightfence status` and GET /status."""
    latest = (
        select(VerdictRow.device_id, func.max(VerdictRow.id).label("vid"))
        .group_by(VerdictRow.device_id)
        .subquery()
    )
    kinds = dict(
        session.execute(
            select(VerdictRow.kind, func.count())
            .join(latest, latest.c.vid == VerdictRow.id)
            .group_by(VerdictRow.kind)
        ).all()
    )
    devices = session.execute(select(func.count()).select_from(DeviceRow)).scalar_one()
    kinds["NONE"] = devices - sum(kinds.values())
    landmarks = dict(
        session.execute(select(LandmarkRow.status, func.count()).group_by(LandmarkRow.status)).all()
    )
    open_alerts = dict(
        session.execute(
            select(AlertRow.kind, func.count())
            .where(AlertRow.acknowledged_ns.is_(None))
            .group_by(AlertRow.kind)
        ).all()
    )
    rejected = {  # PostgreSQL sums BIGINT as NUMERIC
        reason: int(n)
        for reason, n in session.execute(
            select(RejectionRow.reason, func.sum(RejectionRow.count)).group_by(RejectionRow.reason)
        )
    }
    head = session.get(AuditHeadRow, 1)
    return {
        "devices": devices,
        "latest_verdicts": kinds,
        "pending_verdicts": session.execute(
            select(func.count()).select_from(DeviceRow).where(DeviceRow.needs_verdict.is_(True))
        ).scalar_one(),
        "landmarks": landmarks,
        "records": session.execute(select(func.count()).select_from(RecordRow)).scalar_one(),
        "gpu_rounds": session.execute(select(func.count()).select_from(GpuRoundRow)).scalar_one(),
        "rejections": rejected,
        "open_alerts": open_alerts,
        "audit_entries": audit.entry_count(session),
        "audit_head": None if head is None else head.hash,
    }
