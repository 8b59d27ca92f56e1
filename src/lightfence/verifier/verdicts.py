"""Verdict recomputation: the verifier's records turned into the core's measurements.

The physics is the core's: every verdict here comes from `lightfence.core.batch.decide_batch`
(the same engine `decide` uses); this module only chooses which records count and records
the result. Which records count, for a device:

* accepted records from landmarks that are `active` now (a flagged landmark's records stop
  counting the moment it is flagged), measured since the landmark's current position was
  registered (a re-surveyed or moved landmark's older records were taken from elsewhere),
  and not found invalid by batch re-verification (fleet.reverify: an edited row, or one whose
  signatures no longer hold);
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
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, true, update
from sqlalchemy.orm import Session

from lightfence.core.batch import MeasurementTable, blamed_rows, decide_batch
from lightfence.core.freshness import WindowRecord, measurement_of, verdict_inputs
from lightfence.core.kinds import Reason, VerdictKind
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import parse_policy, policy_of
from lightfence.core.robust import DEFAULT_LIARS
from lightfence.core.verdict import Verdict, decide, reason_text
from lightfence.model.policy import PolicySpec, parse_policy_spec
from lightfence.units import Bound
from lightfence.verifier import alerts, audit, statehash
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import DeviceRow, LandmarkRow, RecordRow, VerdictRow
from lightfence.verifier.sqlin import one_of

NS_PER_H = 3600 * 10**9
NS_PER_MS = 10**6


@dataclass(frozen=True)
class VerdictInput:
    """One landmark's measurement of a device as it enters a verdict: its tightest record.

    The RTT keeps the name and unit it has on the wire and in the record store (`min_rtt_ns`);
    `rtt_ms` converts at the one edge where it meets the core, whose physics is in ms. The stored
    verdict (`VerdictRow.inputs`, the API's `measurements`) is `to_json_dict()`: the core's
    vocabulary, `rtt_ms`, as it always was, so stores written before keep reading back.
    """

    record_id: int
    landmark_id: str
    lat_deg: float
    lon_deg: float
    min_rtt_ns: int
    position_error_km: float
    """The landmark's survey error plus the device's possible movement since the record."""
    measured_ns: int

    @property
    def rtt_ms(self) -> float:
        return self.min_rtt_ns / NS_PER_MS

    def measurement(self) -> Measurement:
        landmark = Landmark(self.landmark_id, self.lat_deg, self.lon_deg, self.position_error_km)
        return Measurement(landmark, self.rtt_ms)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "landmark_id": self.landmark_id,
            "lat": self.lat_deg,
            "lon": self.lon_deg,
            "rtt_ms": self.rtt_ms,
            "position_error_km": self.position_error_km,
            "measured_ns": self.measured_ns,
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> VerdictInput:
        """Read back a stored input; `round` undoes the ns -> ms division exactly."""
        return cls(
            record_id=int(d["record_id"]),
            landmark_id=str(d["landmark_id"]),
            lat_deg=float(d["lat"]),
            lon_deg=float(d["lon"]),
            min_rtt_ns=round(float(d["rtt_ms"]) * NS_PER_MS),
            position_error_km=float(d["position_error_km"]),
            measured_ns=int(d["measured_ns"]),
        )


@dataclass(frozen=True)
class Pending:
    """A device's verdict inputs as read, before the decision."""

    device_id: str
    dirty_seq: int
    policy: str
    bound: str
    claimed: str | None
    as_of_ns: int
    inputs: list[VerdictInput]
    liars: str = str(DEFAULT_LIARS)
    """The policy's tolerated-liar setting (core.robust): a count or 'auto'."""
    require_locates: str = "key"
    """The licence's required `locates` (model.trust.Locates)."""
    gpu_inputs: list[dict[str, Any]] | None = None
    """GPU-signed rounds to decide on (verifier.gpu_verdicts); None: the device has none."""
    gpu_as_of_ns: int | None = None


@dataclass(frozen=True)
class _Rec:
    id: int
    landmark_id: str
    min_rtt_ns: int
    measured_ns: int


def _inputs_for(
    newest_ns: int,
    bound: Bound,
    records: list[_Rec],
    landmarks: dict[str, LandmarkRow],
    config: VerifierConfig,
) -> list[VerdictInput]:
    # The rule itself is core.freshness's, shared with the offline `lightfence verify`.
    candidates = (
        WindowRecord(
            rec.id,
            rec.landmark_id,
            landmarks[rec.landmark_id].lat,
            landmarks[rec.landmark_id].lon,
            landmarks[rec.landmark_id].position_error_km,
            rec.min_rtt_ns,
            rec.measured_ns,
        )
        for rec in records
    )
    chosen = verdict_inputs(
        candidates,
        newest_ns,
        bound,
        config.verdict_window_s,
        config.max_device_speed_km_per_h,
    )
    return [VerdictInput.from_json_dict(d) for d in chosen]


def read_pending(
    session: Session,
    config: VerifierConfig,
    limit: int = 2000,
    devices_of: Collection[str] | None = None,
    *,
    marked_only: bool = True,
) -> list[Pending]:
    """Devices awaiting a verdict, with their inputs; `devices_of`: only these (a stream
    worker decides the devices of its own partitions, so two workers never decide one twice).
    `marked_only=False` (batch re-verification): these devices whether marked or not."""
    query = (
        select(
            DeviceRow.id,
            DeviceRow.dirty_seq,
            DeviceRow.policy,
            DeviceRow.bound,
            DeviceRow.declared_country,
            DeviceRow.last_record_ns,
            DeviceRow.require_locates,
        )
        .where(DeviceRow.needs_verdict.is_(True) if marked_only else true())
        .order_by(DeviceRow.id)
        .limit(limit)
    )
    if devices_of is not None:
        query = query.where(one_of(DeviceRow.id, sorted(devices_of)))
    devices = session.execute(query).all()
    if not devices:
        return []
    window_ns = int(config.verdict_window_s * 1e9)
    landmarks = {
        lm.id: lm
        for lm in session.execute(select(LandmarkRow).where(LandmarkRow.status == "active"))
        .scalars()
        .all()
    }
    oldest = min((d.last_record_ns or 0) for d in devices) - window_ns
    by_device: dict[str, list[_Rec]] = defaultdict(list)
    skew_ns = int(config.max_clock_skew_s * 1e9)
    ids = [d.id for d in devices]
    for k in range(0, len(ids), 500):  # bounded IN lists
        rows = session.execute(
            select(
                RecordRow.id,
                RecordRow.device_id,
                RecordRow.landmark_id,
                RecordRow.min_rtt_ns,
                RecordRow.measured_ns,
            ).where(
                one_of(RecordRow.device_id, ids[k : k + 500]),
                RecordRow.measured_ns >= oldest,
                RecordRow.invalid_ns.is_(None),  # failed re-verification (fleet.reverify)
            )
        )
        for rid, did, lid, rtt_ns, measured in rows:
            # A record taken before the landmark's current position was registered was
            # measured from elsewhere: placing it at the new position would be unsound. The
            # landmark's clock may run ahead of ours by up to the accepted skew.
            since = landmarks[lid].position_since_ns if lid in landmarks else 0
            if lid in landmarks and (since == 0 or measured >= since + skew_ns):
                by_device[did].append(_Rec(rid, lid, rtt_ns, measured))
    out = []
    for d in devices:
        newest = d.last_record_ns or 0
        mine = by_device[d.id]  # verdict_inputs keeps those within the window
        out.append(
            Pending(
                device_id=d.id,
                dirty_seq=d.dirty_seq,
                policy=d.policy,
                bound=d.bound,
                claimed=d.declared_country,
                as_of_ns=newest,
                inputs=_inputs_for(newest, Bound(d.bound), mine, landmarks, config),
                liars=str(config.liars),
                require_locates=d.require_locates,
            )
        )
    return out


def measurements_of(inputs: Sequence[VerdictInput | dict[str, Any]]) -> list[Measurement]:
    """Measurements from typed key inputs, or from stored GPU-round inputs (dicts that carry
    their S_floor as `floor_ms`, verifier.gpu_verdicts)."""
    return [i.measurement() if isinstance(i, VerdictInput) else measurement_of(i) for i in inputs]


def _table(group: list[Pending]) -> MeasurementTable:
    counts = [len(p.inputs) for p in group]
    flat = [i for p in group for i in p.inputs]

    def col(values: list[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array(values, dtype=np.float64)

    return MeasurementTable(
        device_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        lat_deg=col([i.lat_deg for i in flat]),
        lon_deg=col([i.lon_deg for i in flat]),
        rtt_ms=col([i.rtt_ms for i in flat]),
        floor_ms=np.zeros(len(flat), dtype=np.float64),
        position_error_km=col([i.position_error_km for i in flat]),
    )


@dataclass(frozen=True)
class Decided:
    pending: Pending
    kind: VerdictKind
    reason: Reason
    text: str
    tolerated_liars: int = 0
    implicated: tuple[str, ...] = ()
    """INCONSISTENT only: the landmarks whose caps cannot be reconciled with the rest."""
    locates: str = "key"
    key_kind: str | None = None
    gpu_kind: str | None = None
    alert: str | None = None
    """`key-gpu-mismatch` (verifier.gpu_verdicts): raised instead of a plain inconsistent alert."""


def decide_pending(pending: list[Pending]) -> list[Decided]:
    """Decide every pending device, batched per policy (one PolicySpec: region, bound, liars)
    through the core engine."""
    groups: dict[PolicySpec, list[Pending]] = defaultdict(list)
    for p in pending:
        groups[parse_policy_spec(p.policy, p.bound, p.liars)].append(p)
    out: list[Decided] = []
    for spec, group in groups.items():
        policy = policy_of(spec)
        table = _table(group)
        result = decide_batch(table, policy, [p.claimed for p in group])
        start = 0
        for i, p in enumerate(group):
            kind = VerdictKind.from_code(int(result.kind[i]))
            reason = Reason(int(result.reason[i]))
            f = int(result.tolerated_liars[i])
            implicated: tuple[str, ...] = ()
            if kind is VerdictKind.INCONSISTENT:
                rows = blamed_rows(table, policy, i) - start
                implicated = tuple(dict.fromkeys(p.inputs[int(r)].landmark_id for r in rows))
            text = reason_text(reason, policy, p.claimed, f, implicated)
            out.append(Decided(p, kind, reason, text, f, implicated))
            start += len(p.inputs)
    return out


@dataclass(frozen=True)
class Stored:
    id: int
    device_id: str
    kind: str
    previous: str | None = None
    """The kind of the device's verdict before this one (None: its first)."""


def store_decided(session: Session, decided: list[Decided], now_ns: int) -> list[Stored]:
    """Store verdicts whose device did not change since it was read; raise their alerts.

    One audit entry covers the pass (every verdict id, device and kind is in its payload).
    """
    # Sorted, and the device rows locked in that order: writers on other stream chains
    # (verifier.audit) may store or mark the same devices meanwhile, and two transactions
    # locking in one order never wait on each other in a cycle.
    ids = sorted({d.pending.device_id for d in decided})
    seqs: dict[str, int] = {}
    waiting: set[str] = set()
    previous: dict[str, str] = {}
    previous_alert: dict[str, str | None] = {}
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        query = (
            select(DeviceRow.id, DeviceRow.dirty_seq, DeviceRow.needs_verdict)
            .where(one_of(DeviceRow.id, chunk))
            .order_by(DeviceRow.id)
            # NO KEY UPDATE: records and verdicts inserted meanwhile hold KEY SHARE on their
            # device (the foreign key); the marks' UPDATE still waits, as it must.
            .with_for_update(key_share=True)
        )
        for did, seq, needs in session.execute(query):
            seqs[did] = seq
            if needs:
                waiting.add(did)
        latest = (
            select(func.max(VerdictRow.id))
            .where(one_of(VerdictRow.device_id, chunk))
            .group_by(VerdictRow.device_id)
        )
        for did, kind, alert in session.execute(
            select(VerdictRow.device_id, VerdictRow.kind, VerdictRow.alert).where(
                VerdictRow.id.in_(latest)
            )
        ):
            previous[did] = kind
            previous_alert[did] = alert
    rows: list[dict[str, Any]] = []
    raise_for: list[Decided] = []
    for d in decided:
        p = d.pending
        if seqs.get(p.device_id) != p.dirty_seq:
            continue  # changed meanwhile: stays dirty, the next pass decides on fresh inputs
        if p.device_id not in waiting:
            # Another recompute (an API replica, a stream worker) stored this very verdict
            # after both read it: storing it again would put one input set in the history twice.
            continue
        rows.append(
            {
                "device_id": p.device_id,
                "kind": d.kind.value,
                "reason_code": int(d.reason),
                "reason": d.text,
                "policy": p.policy,
                "bound": p.bound,
                "claimed": p.claimed,
                "as_of_ns": p.as_of_ns,
                "computed_ns": now_ns,
                "inputs": [i.to_json_dict() for i in p.inputs],
                "liars": p.liars,
                "tolerated_liars": d.tolerated_liars,
                "implicated": list(d.implicated),
                "locates": d.locates,
                "key_kind": d.key_kind,
                "gpu_kind": d.gpu_kind,
                "gpu_inputs": p.gpu_inputs,
                "alert": d.alert,
            }
        )
        alarming = d.kind in (VerdictKind.REFUTED, VerdictKind.INCONSISTENT)
        changed = (previous.get(p.device_id), previous_alert.get(p.device_id)) != (
            d.kind.value,
            d.alert,
        )
        if alarming and changed:
            raise_for.append(d)
    if not rows:
        return []
    # The device rows are locked (FOR UPDATE above), so the dirty_seq read is still current
    # until this transaction ends: one UPDATE clears the devices decided.
    done = [r["device_id"] for r in rows]
    for k in range(0, len(done), 500):
        session.execute(
            update(DeviceRow)
            .where(one_of(DeviceRow.id, done[k : k + 500]))
            .values(needs_verdict=False)
        )
    stmt = insert(VerdictRow).returning(VerdictRow.id, sort_by_parameter_order=True)
    new_ids = [int(i) for i in session.execute(stmt, rows).scalars()]
    stored = [
        Stored(i, r["device_id"], r["kind"], previous.get(r["device_id"]))
        for i, r in zip(new_ids, rows, strict=True)
    ]
    audit.append(
        session,
        actor="system",
        action="verdict.store",
        subject=f"{len(stored)} verdict(s)",
        payload={
            "verdicts": [
                [s.id, s.device_id, s.kind, [i["record_id"] for i in r["inputs"]]]
                # A verdict from GPU rounds also names them, and what it locates.
                + (
                    [r["locates"], [i["gpu_round_id"] for i in r["gpu_inputs"]]]
                    if r["gpu_inputs"]
                    else []
                )
                for s, r in zip(stored, rows, strict=True)
            ]
        },
        now_ns=now_ns,
        state=[
            statehash.row_ref("verdicts", {**r, "id": i})
            for i, r in zip(new_ids, rows, strict=True)
        ],
    )
    for d in raise_for:
        alerts.raise_alert(
            session,
            kind=alerts.AlertKind(d.alert or d.kind.value.lower()),
            device_id=d.pending.device_id,
            message=f"verdict {d.kind.value}: {d.text}",
            now_ns=now_ns,
        )
    return stored


def verdict_of(row: VerdictRow) -> Verdict | None:
    """The stored verdict recomputed through `core.decide` (for its feasible region and radii).

    None when it had no measurements. The kind always matches the stored one (same engine),
    except for a key-gpu-mismatch: its region shown is the GPU rounds' (locates gpu).
    """
    policy = parse_policy(row.policy, row.bound, row.liars or DEFAULT_LIARS)
    if row.locates == "gpu" and row.gpu_inputs:
        return decide(measurements_of(row.gpu_inputs), policy, row.claimed)
    if not row.inputs:
        return None
    inputs = [VerdictInput.from_json_dict(i) for i in row.inputs]
    return decide(measurements_of(inputs), policy, row.claimed)
