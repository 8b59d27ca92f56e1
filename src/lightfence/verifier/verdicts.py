"""Verdict recomputation: the verifier's records turned into the core's measurements.

The physics is the core's: every verdict here comes from `lightfence.core.batch.decide_batch`
(the same engine `decide` uses); this module only chooses which records count and records
the result. Which records count, for a device:

* accepted records from landmarks that are `active` now (a flagged landmark's records stop
  counting the moment it is flagged);
* measured within `verdict_window_s` before the device's newest record;
* each landmark's survey error, plus a movement allowance for an older record (the device may
  have moved at `max_device_speed_km_per_h` since), is the landmark's position error: caps only
  grow, so the verdict stays sound for a device that moved during the window.

Recomputation is optimistic: inputs are read and decided outside the write lock, then a verdict
is stored only if the device's `dirty_seq` did not change meanwhile (otherwise the next pass
takes it), so ingestion never waits on the geometry.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import Reason, VerdictKind
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import Policy, PolicyError, parse_policy
from lightfence.core.verdict import Verdict, decide
from lightfence.units import Bound, max_distance_km
from lightfence.verifier import alerts, audit
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import DeviceRow, LandmarkRow, RecordRow, VerdictRow

NS_PER_H = 3600 * 10**9


@dataclass(frozen=True)
class Pending:
    """A device's verdict inputs as read, before the decision."""

    device_id: str
    dirty_seq: int
    policy: str
    bound: str
    claimed: str | None
    as_of_ns: int
    inputs: list[dict[str, Any]]


def _reach_km(item: dict[str, Any], bound: Bound) -> float:
    return float(max_distance_km(item["rtt_ms"], bound) + item["position_error_km"])


def _inputs_for(
    device: DeviceRow, rows: list[tuple[RecordRow, LandmarkRow]], config: VerifierConfig
) -> list[dict[str, Any]]:
    bound = Bound(device.bound)
    newest = device.last_record_ns or 0
    best: dict[str, dict[str, Any]] = {}
    for rec, lm in rows:
        age_h = max(newest - rec.measured_ns, 0) / NS_PER_H
        error_km = lm.position_error_km + config.max_device_speed_km_per_h * age_h
        item = {
            "record_id": rec.id,
            "landmark_id": lm.id,
            "lat": lm.lat,
            "lon": lm.lon,
            "rtt_ms": rec.min_rtt_ns / 1e6,
            "position_error_km": error_km,
        }
        # Several records from one landmark: all are sound caps; keep the tightest one.
        old = best.get(lm.id)
        if old is None or _reach_km(item, bound) < _reach_km(old, bound):
            best[lm.id] = item
    return sorted(best.values(), key=lambda i: (i["landmark_id"], i["record_id"]))


def read_pending(session: Session, config: VerifierConfig, limit: int = 2000) -> list[Pending]:
    devices = (
        session.execute(
            select(DeviceRow)
            .where(DeviceRow.needs_verdict.is_(True))
            .order_by(DeviceRow.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    if not devices:
        return []
    window_ns = int(config.verdict_window_s * 1e9)
    by_device: dict[str, list[tuple[RecordRow, LandmarkRow]]] = defaultdict(list)
    oldest = min((d.last_record_ns or 0) for d in devices) - window_ns
    rows = session.execute(
        select(RecordRow, LandmarkRow)
        .join(LandmarkRow, LandmarkRow.id == RecordRow.landmark_id)
        .where(
            RecordRow.device_id.in_([d.id for d in devices]),
            RecordRow.measured_ns >= oldest,
            LandmarkRow.status == "active",
        )
    )
    for rec, lm in rows:
        by_device[rec.device_id].append((rec, lm))
    out = []
    for d in devices:
        newest = d.last_record_ns or 0
        mine = [(r, lm) for r, lm in by_device[d.id] if r.measured_ns >= newest - window_ns]
        out.append(
            Pending(
                device_id=d.id,
                dirty_seq=d.dirty_seq,
                policy=d.policy,
                bound=d.bound,
                claimed=d.declared_country,
                as_of_ns=newest,
                inputs=_inputs_for(d, mine, config),
            )
        )
    return out


def measurements_of(inputs: list[dict[str, Any]]) -> list[Measurement]:
    return [
        Measurement(
            Landmark(i["landmark_id"], i["lat"], i["lon"], i["position_error_km"]), i["rtt_ms"]
        )
        for i in inputs
    ]


def _table(group: list[Pending]) -> MeasurementTable:
    counts = [len(p.inputs) for p in group]
    flat = [i for p in group for i in p.inputs]

    def col(name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array([i[name] for i in flat], dtype=np.float64)

    return MeasurementTable(
        device_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        lat_deg=col("lat"),
        lon_deg=col("lon"),
        rtt_ms=col("rtt_ms"),
        floor_ms=np.zeros(len(flat), dtype=np.float64),
        position_error_km=col("position_error_km"),
    )


def reason_text(code: Reason, policy: Policy, claimed: str | None) -> str:
    try:
        allowed = policy.allowed_for(claimed)
    except PolicyError:
        return f"{code.name.lower()}: the policy needs a declared country"
    forbidden = allowed.complement().name

    def phrase(name: str) -> str:
        return name if name.startswith(("outside ", "within ")) else f"in {name}"

    text = code.text(phrase(allowed.name), phrase(forbidden), claimed)
    if policy.bound is Bound.FIBRE:
        text += " (fibre bound: assumes no path faster than glass fibre)"
    return text


@dataclass(frozen=True)
class Decided:
    pending: Pending
    kind: VerdictKind
    reason: Reason
    text: str


def decide_pending(pending: list[Pending]) -> list[Decided]:
    """Decide every pending device, batched per (policy, bound) through the core engine."""
    groups: dict[tuple[str, str], list[Pending]] = defaultdict(list)
    for p in pending:
        groups[(p.policy, p.bound)].append(p)
    out: list[Decided] = []
    for (policy_text, bound), group in groups.items():
        policy = parse_policy(policy_text, bound)
        result = decide_batch(_table(group), policy, [p.claimed for p in group])
        for p, k, r in zip(group, result.kind, result.reason, strict=True):
            reason = Reason(int(r))
            out.append(
                Decided(
                    p, VerdictKind.from_code(int(k)), reason, reason_text(reason, policy, p.claimed)
                )
            )
    return out


def store_decided(session: Session, decided: list[Decided], now_ns: int) -> list[VerdictRow]:
    """Store verdicts whose device did not change since it was read; raise their alerts."""
    stored: list[VerdictRow] = []
    for d in decided:
        p = d.pending
        dev = session.get(DeviceRow, p.device_id)
        if dev is None or dev.dirty_seq != p.dirty_seq:
            continue  # changed meanwhile: stays dirty, the next pass decides on fresh inputs
        previous = session.execute(
            select(VerdictRow.kind)
            .where(VerdictRow.device_id == p.device_id)
            .order_by(VerdictRow.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        row = VerdictRow(
            device_id=p.device_id,
            kind=d.kind.value,
            reason_code=int(d.reason),
            reason=d.text,
            policy=p.policy,
            bound=p.bound,
            claimed=p.claimed,
            as_of_ns=p.as_of_ns,
            computed_ns=now_ns,
            inputs=p.inputs,
        )
        session.add(row)
        dev.needs_verdict = False
        session.flush()
        audit.append(
            session,
            actor="system",
            action="verdict.store",
            subject=p.device_id,
            payload={"id": row.id, "kind": row.kind, "records": [i["record_id"] for i in p.inputs]},
            now_ns=now_ns,
        )
        if d.kind in (VerdictKind.REFUTED, VerdictKind.INCONSISTENT) and previous != d.kind.value:
            alerts.raise_alert(
                session,
                kind=alerts.AlertKind(d.kind.value.lower()),
                device_id=p.device_id,
                message=f"verdict {d.kind.value}: {d.text}",
                now_ns=now_ns,
            )
        stored.append(row)
    return stored


def verdict_of(row: VerdictRow) -> Verdict | None:
    """The stored verdict recomputed through `core.decide` (for its feasible region and radii).

    None when it had no measurements. The kind always matches the stored one: same engine.
    """
    if not row.inputs:
        return None
    return decide(measurements_of(row.inputs), parse_policy(row.policy, row.bound), row.claimed)
