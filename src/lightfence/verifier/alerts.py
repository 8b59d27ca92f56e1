"""Alerts: what a compliance team must look at. Raised inside the write that caused them.

One open (unacknowledged) alert per kind and device: a device that keeps failing, from however
many landmarks (real or made up), does not bury the list; the open alert counts the repeats
(`count`, `last_ns`). Alerts about no known device (records naming an unknown device) share one
open alert per kind; a landmark's own alert (flagged) is one per landmark. Acknowledging an
alert lets the next occurrence raise a fresh one.
New alerts are also put in `session.info["new_alerts"]`, for the webhook and metrics after commit.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, cast, func, literal, select, text, update
from sqlalchemy.orm import Session

from lightfence.verifier import audit
from lightfence.verifier.clock import iso
from lightfence.verifier.errors import NotFound
from lightfence.verifier.models import AlertRow, DeviceRow

NEW_ALERTS_KEY = "new_alerts"
MAX_MESSAGE_CHARS = 1000
"""Messages quote what submitters sent (ids, reasons); longer ones are cut."""


class AlertKind(StrEnum):
    REFUTED = "refuted"
    INCONSISTENT = "inconsistent"
    REJECTED_EVIDENCE = "rejected_evidence"
    MISSED_CHECKIN = "missed_checkin"
    IDENTITY_CHANGE = "identity_change"
    LANDMARK_FLAGGED = "landmark_flagged"
    KEY_REUSE = "key_reuse"
    """Someone tried to enrol a device key already enrolled under another device id."""
    KEY_GPU_MISMATCH = "key-gpu-mismatch"
    """The key's caps and the GPU-signed rounds' caps are disjoint: moved or cloned key."""
    TAMPERED_EVIDENCE = "tampered_evidence"
    """A stored record or GPU round is no longer the signed row it claims to be (fleet.reverify):
    edited in the database, or its signatures or evidence fail now. A later verdict does not
    clear it: the database was written behind the verifier's back."""


PER_LANDMARK = frozenset({AlertKind.LANDMARK_FLAGGED})
"""Kinds about a landmark itself: one open alert per landmark, not one per kind."""
ALERT_LOCK_CLASS = 0x6C66
"""PostgreSQL advisory lock class (the two-key form) of one open alert's (kind, device)."""
_ALERT_LOCK = text("SELECT pg_advisory_xact_lock(:c, hashtext(current_schema() || :k))")


def raise_alert(
    session: Session,
    *,
    kind: AlertKind,
    message: str,
    now_ns: int,
    device_id: str | None = None,
    landmark_id: str | None = None,
    count: int = 1,
    count_repeats: bool = True,
) -> AlertRow | None:
    """Add an alert unless the same one is still open (then count it there, unless
    `count_repeats` is off: a periodic sweep re-finding the same condition is no new
    occurrence, and would rewrite every open row each pass). Returns the new row, or None."""
    same = [
        AlertRow.kind == kind.value,
        AlertRow.device_id.is_(None) if device_id is None else AlertRow.device_id == device_id,
        AlertRow.acknowledged_ns.is_(None),
    ]
    if kind in PER_LANDMARK:
        same.append(
            AlertRow.landmark_id.is_(None)
            if landmark_id is None
            else AlertRow.landmark_id == landmark_id
        )
    if audit.on_postgresql(session):
        # Writers on different stream chains (verifier.audit) run side by side: without this
        # lock both would find no open alert and add one each.
        key = f"{kind.value}\n{device_id}\n{landmark_id if kind in PER_LANDMARK else ''}"
        session.execute(_ALERT_LOCK, {"c": ALERT_LOCK_CLASS, "k": key})
    open_id = session.execute(select(AlertRow.id).where(*same).limit(1)).scalar_one_or_none()
    if open_id is not None and not count_repeats:
        return None
    if open_id is not None:
        # Not audited one by one: the write that caused it is (a flood adds no audit rows).
        session.execute(
            update(AlertRow)
            .where(AlertRow.id == open_id)
            .values(count=AlertRow.count + count, last_ns=now_ns)
        )
        return None
    message = message[:MAX_MESSAGE_CHARS]
    row = AlertRow(
        kind=kind.value,
        device_id=device_id,
        landmark_id=landmark_id,
        message=message,
        created_ns=now_ns,
        count=count,
        last_ns=now_ns,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor="system",
        action="alert.raise",
        subject=str(row.id),
        payload={"kind": kind.value, "device": device_id, "landmark": landmark_id, "msg": message},
        now_ns=now_ns,
    )
    session.info.setdefault(NEW_ALERTS_KEY, []).append(alert_dict(row))
    return row


def alert_dict(row: AlertRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "device_id": row.device_id,
        "landmark_id": row.landmark_id,
        "message": row.message,
        "count": row.count or 1,
        "created_at": iso(row.created_ns),
        "last_seen_at": iso(row.last_ns or row.created_ns),
        "acknowledged_at": iso(row.acknowledged_ns),
        "acknowledged_by": row.acknowledged_by,
    }


def acknowledge(session: Session, alert_id: int, actor: str, now_ns: int) -> AlertRow:
    row = session.get(AlertRow, alert_id)
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    if row.acknowledged_ns is None:
        row.acknowledged_ns, row.acknowledged_by = now_ns, actor
        audit.append(
            session,
            actor=actor,
            action="alert.ack",
            subject=str(alert_id),
            payload={},
            now_ns=now_ns,
        )
    return row


CSV_COLUMNS = (
    "id",
    "kind",
    "device_id",
    "landmark_id",
    "message",
    "count",
    "created_at",
    "last_seen_at",
    "acknowledged_at",
    "acknowledged_by",
)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_COLUMNS})
    return out.getvalue()


def sweep_missed_checkins(session: Session, now_ns: int) -> int:
    """Alert on every device with no accepted record within its check-in interval.

    The last check-in is the newest accepted record's measurement time (or enrolment, before
    any); every accepted record triggers a fresh verdict, so this is "no fresh verdict".
    """
    last = func.coalesce(DeviceRow.last_record_ns, DeviceRow.enrolled_ns)
    overdue = session.execute(
        select(DeviceRow.id, DeviceRow.checkin_interval_s, last).where(
            last
            < literal(now_ns, BigInteger)
            - cast(DeviceRow.checkin_interval_s, BigInteger) * literal(10**9, BigInteger)
        )
    ).all()
    raised = 0
    for device_id, interval_s, last_ns in overdue:
        row = raise_alert(
            session,
            kind=AlertKind.MISSED_CHECKIN,
            device_id=device_id,
            message=(
                f"no fresh measurement since {iso(last_ns)}; the licence requires one every "
                f"{interval_s} s"
            ),
            now_ns=now_ns,
            count_repeats=False,
        )
        raised += row is not None
    return raised
