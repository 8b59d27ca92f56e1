"""Landmark scoring: which landmarks the devices' INCONSISTENT verdicts keep naming.

A device can only add delay, so with honest, well-surveyed landmarks its feasible region is
never empty; an INCONSISTENT verdict names the landmarks whose caps are too small
(`VerdictRow.implicated`). After each recompute pass that stored or replaced an INCONSISTENT
verdict, every active landmark is scored with `core.blame.implicated_landmarks` over the
*latest* verdict of each device: one device counts once however many records it sends, so a
cloned device key cannot frame a landmark by volume.

Past `VerifierConfig.implicated_flag_min_devices` (devices whose latest verdict names the
landmark alone) the landmark is flagged for review with reason `implicated: ...`, an alert and
an audit entry; its records stop counting, as for a landmark that breaks physics (crosscheck),
so the devices it lied to get verdicts from the honest rest. An admin clears it after review;
from then on only its records measured after the clear can implicate it again
(`LandmarkRow.blame_since_ns`), so the review is not undone by the records it covered.

A flagged landmark's scores are frozen at the values that flagged it: the devices' new verdicts
no longer include it, so rescoring would show 0 and hide why it was flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lightfence.core.blame import LandmarkBlame, implicated_landmarks
from lightfence.core.kinds import VerdictKind
from lightfence.verifier import alerts
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import LandmarkRow, VerdictRow
from lightfence.verifier.registry import set_landmark_status

IMPLICATED = "implicated"
"""The first word of the status reason of a landmark flagged by scoring."""

_SCORING = Principal(name="blame-scoring", role=Role.ADMIN)


@dataclass(frozen=True)
class _Named:
    """A stored verdict as core.blame reads it (core.blame.NamesLandmarks)."""

    kind: VerdictKind
    implicated: tuple[str, ...]


def _counts(row_implicated: list[str], inputs: list[dict[str, Any]], since: dict[str, int]) -> bool:
    """Whether a verdict may implicate its landmarks: each named landmark's record was measured
    after that landmark was last cleared (records without a time predate 0003: time 0)."""
    measured = {i["landmark_id"]: int(i.get("measured_ns", 0)) for i in inputs}
    return all(
        since.get(lid, 0) == 0 or measured.get(lid, 0) > since[lid] for lid in row_implicated
    )


def score(session: Session, config: VerifierConfig, now_ns: int, *, flag: bool = True) -> list[str]:
    """Rescore every active landmark; flag those past the threshold. Returns the newly flagged
    (with `flag=False`, those due to be flagged, left as they are: a stream-chain transaction
    may write the counters, which are bookkeeping, but not a landmark's status)."""
    # The rows are locked before the verdicts are read: a writer on another stream chain that
    # rescores at the same time then waits, and reads the verdicts this one adds.
    query = (
        select(LandmarkRow)
        .where(LandmarkRow.status == "active")
        .order_by(LandmarkRow.id)
        # NO KEY UPDATE: a record inserted meanwhile holds KEY SHARE on its landmark (the
        # foreign key), and must not wait for a rescore, nor deadlock with one.
        .with_for_update(key_share=True)
    )
    landmarks = {row.id: row for row in session.execute(query).scalars().all()}
    since = {lid: row.blame_since_ns for lid, row in landmarks.items()}
    named: list[_Named] = []
    devices: dict[str, list[str]] = {}
    for device_id, implicated, inputs in _latest_inconsistent(session):
        ids = tuple(implicated)
        if not ids or not _counts(list(ids), inputs, since):
            continue
        named.append(_Named(VerdictKind.INCONSISTENT, ids))
        if len(ids) == 1:
            devices.setdefault(ids[0], []).append(device_id)
    scores = implicated_landmarks(named)
    zero = LandmarkBlame(0, 0, 0.0)
    flagged: list[str] = []
    for lid, row in sorted(landmarks.items()):
        s = scores.get(lid, zero)
        row.implicated_named, row.implicated_alone = s.named, s.alone
        row.implicated_blame = round(s.blame, 6)
        threshold = config.implicated_flag_min_devices
        if threshold and s.alone >= threshold:
            if flag:
                _flag(session, row, s, sorted(devices.get(lid, [])), now_ns)
            flagged.append(lid)
    session.flush()
    return flagged


def _latest_inconsistent(session: Session) -> list[tuple[str, list[str], list[dict[str, Any]]]]:
    """(device, implicated, inputs) of every device whose latest verdict is INCONSISTENT.

    Only devices that were ever INCONSISTENT are looked at (the `kind` index), then their latest
    verdict id (the (device_id, id) index): the cost follows the troubled devices, not the fleet.
    """
    inconsistent = VerdictKind.INCONSISTENT.value
    ever = list(
        session.execute(
            select(VerdictRow.device_id).where(VerdictRow.kind == inconsistent).distinct()
        ).scalars()
    )
    out: list[tuple[str, list[str], list[dict[str, Any]]]] = []
    for k in range(0, len(ever), 500):  # bounded IN lists
        latest = (
            select(func.max(VerdictRow.id))
            .where(VerdictRow.device_id.in_(ever[k : k + 500]))
            .group_by(VerdictRow.device_id)
        )
        rows = session.execute(
            select(VerdictRow.device_id, VerdictRow.implicated, VerdictRow.inputs).where(
                VerdictRow.id.in_(latest), VerdictRow.kind == inconsistent
            )
        )
        out.extend((d, list(i or ()), list(inp)) for d, i, inp in rows)
    return out


def _flag(
    session: Session, row: LandmarkRow, s: LandmarkBlame, devices: list[str], now_ns: int
) -> None:
    reason = (
        f"{IMPLICATED}: the latest verdicts of {s.alone} device(s) are INCONSISTENT and name "
        f"it alone ({s.named} name it in all): its RTTs are too short for the rest to agree "
        f"(lying or mis-surveyed); devices {', '.join(d[:8] for d in devices[:10])}"
    )
    set_landmark_status(session, row.id, "flagged", reason, _SCORING, now_ns)
    alerts.raise_alert(
        session,
        kind=alerts.AlertKind.LANDMARK_FLAGGED,
        landmark_id=row.id,
        message=f"landmark {row.id} flagged: {reason}",
        now_ns=now_ns,
    )


def scores_of(row: LandmarkRow) -> dict[str, Any]:
    """A landmark's implication scores, for /landmarks/health and the dashboard."""
    return {
        "named": row.implicated_named,
        "named_alone": row.implicated_alone,
        "blame": row.implicated_blame,
        "cleared_at_ns": row.blame_since_ns or None,
    }
