"""Landmark cross-check: surveyed positions against the RTTs landmarks measure to each other.

An RTT between two landmarks can never be shorter than light needs for the distance between
their true positions, which is at least the surveyed distance less both survey errors. A report
faster than that breaks physics: one of the two positions (or its clock) is wrong.

Which one? Violations form a graph between landmarks. The landmarks with the most violations
are flagged (all of them on a tie), and again, until no violation is left between unflagged
landmarks. A single mis-surveyed landmark among honest ones breaks with all the peers it meets,
while each honest peer breaks only with it, so only it is flagged, whatever order the reports
arrive in; with only two landmarks both are flagged, as neither can be believed over the other.
A flagged landmark's records stop counting until an admin clears it (after a re-survey).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from lightfence.geo.sphere import geodesic_km
from lightfence.units import Bound, max_distance_km
from lightfence.verifier import alerts, audit
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.blame import scores_of
from lightfence.verifier.errors import BadInput, Forbidden
from lightfence.verifier.models import LandmarkLinkRow, LandmarkRow
from lightfence.verifier.registry import get_landmark, set_landmark_status

SURVEY_SLACK_KM = 1.0
"""Extra distance forgiven on top of the survey errors (rounding of surveyed coordinates)."""


@dataclass(frozen=True)
class PeerRtt:
    peer_id: str
    rtt_ms: float
    measured_ns: int


def min_distance_km(a: LandmarkRow, b: LandmarkRow) -> float:
    """The least the true positions can be apart, given the survey and its errors."""
    surveyed = geodesic_km(a.lat, a.lon, b.lat, b.lon)
    return max(surveyed - a.position_error_km - b.position_error_km - SURVEY_SLACK_KM, 0.0)


def breaks_physics(a: LandmarkRow, b: LandmarkRow, rtt_ms: float) -> bool:
    return max_distance_km(rtt_ms, Bound.VACUUM) < min_distance_km(a, b)


def report_peer_rtts(
    session: Session, landmark_id: str, rtts: list[PeerRtt], who: Principal, now_ns: int
) -> list[str]:
    """Store a landmark's RTTs to its peers; flag what breaks physics. Returns newly flagged ids."""
    if who.role is Role.LANDMARK and who.owner != landmark_id:
        raise Forbidden(f"this landmark token may report RTTs of {who.owner!r} only")
    if who.role not in (Role.LANDMARK, Role.ADMIN):
        raise Forbidden("peer RTTs come from a landmark token (or an admin)")
    me = get_landmark(session, landmark_id)
    for r in rtts:
        if r.peer_id == landmark_id:
            raise BadInput("a landmark cannot report an RTT to itself")
        if not 0.0 < r.rtt_ms < 10_000.0:
            raise BadInput(f"rtt_ms to {r.peer_id} must be in (0, 10000)")
        peer = get_landmark(session, r.peer_id)
        a, b = sorted((landmark_id, r.peer_id))
        link = session.execute(
            select(LandmarkLinkRow).where(
                LandmarkLinkRow.landmark_id == a, LandmarkLinkRow.peer_id == b
            )
        ).scalar_one_or_none()
        if link is None:
            link = LandmarkLinkRow(
                landmark_id=a, peer_id=b, rtt_ms=r.rtt_ms, measured_ns=r.measured_ns, violates=False
            )
            session.add(link)
        elif r.rtt_ms < link.rtt_ms:
            link.rtt_ms, link.measured_ns = r.rtt_ms, r.measured_ns
        link.violates = breaks_physics(me, peer, link.rtt_ms)
    session.flush()
    audit.append(
        session,
        actor=who.actor,
        action="landmark.peer_rtts",
        subject=landmark_id,
        payload={"rtts": [[r.peer_id, r.rtt_ms, r.measured_ns] for r in rtts]},
        now_ns=now_ns,
    )
    return evaluate(session, now_ns)


def refresh_links(session: Session, landmark_id: str, now_ns: int) -> list[str]:
    """Re-judge a landmark's links after its position changed (a re-survey)."""
    links = session.execute(
        select(LandmarkLinkRow).where(
            or_(LandmarkLinkRow.landmark_id == landmark_id, LandmarkLinkRow.peer_id == landmark_id)
        )
    ).scalars()
    for link in links:
        a, b = session.get(LandmarkRow, link.landmark_id), session.get(LandmarkRow, link.peer_id)
        if a is not None and b is not None:
            link.violates = breaks_physics(a, b, link.rtt_ms)
    session.flush()
    return evaluate(session, now_ns)


def evaluate(session: Session, now_ns: int) -> list[str]:
    """Flag landmarks until no violation is left between active ones. Returns the new flags."""
    status = dict(session.execute(select(LandmarkRow.id, LandmarkRow.status)).all())
    edges = {
        (link.landmark_id, link.peer_id)
        for link in session.execute(select(LandmarkLinkRow).where(LandmarkLinkRow.violates))
        .scalars()
        .all()
    }
    flagged: list[str] = []
    while True:
        live = [(a, b) for a, b in edges if status.get(a) == "active" and status.get(b) == "active"]
        if not live:
            break
        degree: dict[str, int] = defaultdict(int)
        for a, b in live:
            degree[a] += 1
            degree[b] += 1
        top = max(degree.values())
        for lid in sorted(k for k, v in degree.items() if v == top):
            bad = sorted({b if a == lid else a for a, b in live if lid in (a, b)})
            reason = (
                f"RTTs to {bad} are faster than light over the surveyed distances: "
                "its position, or its clock, is wrong"
            )
            set_landmark_status(session, lid, "flagged", reason, _CROSSCHECK, now_ns)
            alerts.raise_alert(
                session,
                kind=alerts.AlertKind.LANDMARK_FLAGGED,
                landmark_id=lid,
                message=f"landmark {lid} flagged: {reason}",
                now_ns=now_ns,
            )
            status[lid] = "flagged"
            flagged.append(lid)
    return flagged


_CROSSCHECK = Principal(name="crosscheck", role=Role.ADMIN)


def health(session: Session) -> list[dict[str, object]]:
    """Every landmark with its status, cross-check summary and implication scores
    (verifier.blame), for the dashboard."""
    peers: dict[str, set[str]] = defaultdict(set)
    bad: dict[str, set[str]] = defaultdict(set)
    for link in session.execute(select(LandmarkLinkRow)).scalars():
        for x, y in ((link.landmark_id, link.peer_id), (link.peer_id, link.landmark_id)):
            peers[x].add(y)
            if link.violates:
                bad[x].add(y)
    out: list[dict[str, object]] = []
    for row in session.execute(select(LandmarkRow).order_by(LandmarkRow.id)).scalars():
        out.append(
            {
                "id": row.id,
                "lat": row.lat,
                "lon": row.lon,
                "position_error_km": row.position_error_km,
                "operator": row.operator,
                "key_id": row.key_id,
                "status": row.status,
                "status_reason": row.status_reason,
                "peers_checked": len(peers[row.id]),
                "peers_breaking_physics": sorted(bad[row.id]),
                "implicated": scores_of(row),
            }
        )
    return out
