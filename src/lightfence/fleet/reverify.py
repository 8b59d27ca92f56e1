"""Batch re-verification of the verifier's stored signed records, on Ray or in one process.

Reads the records the verifier stored (their signed JSON bodies, in its database: no side
channel), checks each again, and puts fresh verdicts into the verifier's own history:

1. the driver lists the devices with stored records and cuts them into chunks;
2. each chunk is one task (a Ray task, or a plain call with `engine="local"`): it reads the
   chunk's stored records and the registry's current keys, checks that each body is the record
   its hash names and that the row's columns are the body's, re-checks both signatures
   (`protocol.record.verify`), then decides the devices whose records all held with
   verifier.verdicts and verifier.gpu_verdicts (`read_pending`, `attach_gpu_inputs`,
   `decide_pending`, `refine`: the core's `decide_batch`, exactly as `Service.recompute`);
3. the driver, in one write per chunk, marks the decided devices for a verdict and stores the
   decisions with `store_decided` (the stream workers' and API's path, audited): a device that
   got a new record since its task read it (its `dirty_seq` moved) is left to the normal pass,
   which decides it on the newer inputs;
4. a record that fails (its row edited behind the verifier's back, or its signatures no longer
   holding against the registry's keys) is marked invalid (`records.invalid_ns`): no verdict
   uses it from then on. Its device gets a `rejected_evidence` alert and is decided again at
   once without it, so a verdict that rested on it (a VERIFIED, perhaps) does not stand.
   Records already marked are not checked again (an attacker who clears the mark is found by
   the next pass), nor are records measured before their landmark moved or was re-keyed: they
   count towards no verdict, and the key that signed them is no longer registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lightfence.protocol.record import MeasurementRecord, RecordError, verify
from lightfence.verifier import alerts, audit, gpu_verdicts, verdicts
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.db import Database
from lightfence.verifier.ingest import record_hash
from lightfence.verifier.models import DeviceRow, LandmarkRow, RecordRow
from lightfence.verifier.service import Service
from lightfence.verifier.sqlin import one_of

CHUNK_DEVICES = 2000
MAX_REASON_CHARS = 500


@dataclass
class ChunkResult:
    records: int = 0
    failed: list[tuple[int, str, str]] = field(default_factory=list)
    """(record id, device id, why) of records that no longer verify."""
    decided: list[verdicts.Decided] = field(default_factory=list)


@dataclass
class ReverifyReport:
    devices: int = 0
    records: int = 0
    verdicts: int = 0
    failed: list[tuple[int, str, str]] = field(default_factory=list)


def _problem(row: Any, lm_key: bytes | None, dev_key: bytes | None) -> str | None:
    try:
        rec = MeasurementRecord.from_json_dict(row.body)
    except RecordError as exc:
        return f"stored body is not a record: {exc}"
    if record_hash(rec) != row.record_hash:
        return "stored body is not the record its hash names"
    columns = (row.device_id, row.landmark_id, row.min_rtt_ns, row.measured_ns)
    if columns != (rec.device_id, rec.landmark_id, rec.min_rtt_ns, rec.measured_at_unix_ns):
        return "stored columns differ from the signed body"
    if lm_key is None or dev_key is None:
        return "its landmark or device is no longer registered"
    try:
        verify(rec, lm_key, dev_key)
    except RecordError as exc:
        return f"signature re-check failed: {exc}"
    return None


def check_chunk(db_url: str, device_ids: Sequence[str], config: VerifierConfig) -> ChunkResult:
    """One task: re-check the chunk's stored records, decide the devices that held."""
    db = Database(db_url)
    out = ChunkResult()
    try:
        with db.read() as s:
            devices = {
                d: bytes.fromhex(pub)
                for d, pub in s.execute(
                    select(DeviceRow.id, DeviceRow.public_key).where(
                        one_of(DeviceRow.id, device_ids)
                    )
                )
            }
            landmarks = {
                lid: bytes.fromhex(pub)
                for lid, pub in s.execute(select(LandmarkRow.id, LandmarkRow.public_key))
            }
            since = {
                lid: int(t)
                for lid, t in s.execute(select(LandmarkRow.id, LandmarkRow.position_since_ns))
            }
            skew_ns = int(config.max_clock_skew_s * 1e9)
            rows = s.execute(
                select(
                    RecordRow.id,
                    RecordRow.record_hash,
                    RecordRow.device_id,
                    RecordRow.landmark_id,
                    RecordRow.min_rtt_ns,
                    RecordRow.measured_ns,
                    RecordRow.body,
                ).where(one_of(RecordRow.device_id, device_ids), RecordRow.invalid_ns.is_(None))
            ).all()
            for row in rows:
                start = since.get(row.landmark_id, 0)
                if start and row.measured_ns < start + skew_ns:
                    # Measured before its landmark moved or was re-keyed: it counts towards no
                    # verdict (verifier.verdicts), and its key is no longer there to check it.
                    continue
                why = _problem(row, landmarks.get(row.landmark_id), devices.get(row.device_id))
                if why is not None:
                    out.failed.append((row.id, row.device_id, why))
            out.records = len(rows)
            bad = {d for _, d, _ in out.failed}
            good = [d for d in device_ids if d not in bad]
            pending = (
                verdicts.read_pending(s, config, len(good), good, marked_only=False) if good else []
            )
            # As Service.recompute: a device's GPU rounds, and a licence that requires its GPU
            # to be located, decide over its key records (a key VERIFIED beside a GPU REFUTED
            # is INCONSISTENT, not VERIFIED).
            pending = gpu_verdicts.attach_gpu_inputs(s, config, pending)
        out.decided = gpu_verdicts.refine(verdicts.decide_pending(pending), config)
    finally:
        db.dispose()
    return out


def _devices_with_records(service: Service) -> list[str]:
    """Enrolled devices with stored records; a retired device gets no new verdict (as on the
    verifier's own path, where its records are refused)."""
    with service.read() as s:
        live = select(DeviceRow.id).where(DeviceRow.retired_ns.is_(None))
        stmt = select(RecordRow.device_id).distinct().where(RecordRow.device_id.in_(live))
        return sorted(s.execute(stmt).scalars().all())


def _store(service: Service, result: ChunkResult) -> int:
    with service.write() as s:
        ids = [d.pending.device_id for d in result.decided]
        for k in range(0, len(ids), 500):
            s.execute(
                update(DeviceRow)
                .where(one_of(DeviceRow.id, ids[k : k + 500]))
                .values(needs_verdict=True)
            )
        if ids:
            audit.append(
                s,
                actor="system",
                action="verdict.reverify",
                subject=f"{len(ids)} device(s)",
                payload={"devices": ids},
                now_ns=now_ns(),
            )
        stored = verdicts.store_decided(s, result.decided, now_ns())
        _exclude(s, result.failed)
        for rid, device_id, why in result.failed:
            alerts.raise_alert(
                s,
                kind=alerts.AlertKind.REJECTED_EVIDENCE,
                device_id=device_id,
                message=f"stored record {rid} fails re-verification: {why}",
                now_ns=now_ns(),
            )
        if result.failed:
            audit.append(
                s,
                actor="system",
                action="record.reverify_failed",
                subject=f"{len(result.failed)} record(s) excluded from verdicts",
                payload={"failed": [list(f) for f in result.failed]},
                now_ns=now_ns(),
            )
    return len(stored)


def reverify(
    service: Service, *, engine: str = "local", chunk: int = CHUNK_DEVICES
) -> ReverifyReport:
    """Re-check every stored record and store fresh verdicts. `engine`: local or ray (Ray
    must be started: fleet.engine_ray.start_ray)."""
    device_ids = _devices_with_records(service)
    report = ReverifyReport(devices=len(device_ids))
    if not device_ids:
        return report
    chunks = [device_ids[k : k + chunk] for k in range(0, len(device_ids), chunk)]
    url, config = service.db.url, service.config
    if engine == "ray":
        import ray

        task = ray.remote(check_chunk)
        results: list[ChunkResult] = ray.get([task.remote(url, c, config) for c in chunks])
    elif engine == "local":
        results = [check_chunk(url, c, config) for c in chunks]
    else:
        raise ValueError(f"unknown engine {engine!r}; use local or ray")
    for result in results:
        report.records += result.records
        report.failed.extend(result.failed)
        report.verdicts += _store(service, result)
    if report.failed:
        # The devices of excluded records, decided now on what remains.
        failed_devices = {device_id for _, device_id, _ in report.failed}
        report.verdicts += service.recompute_all(devices_of=failed_devices)
    return report


def _exclude(session: Session, failed: Sequence[tuple[int, str, str]]) -> None:
    """Mark the failed records invalid and their devices for a verdict."""
    if not failed:
        return
    at = now_ns()
    for rid, _, why in failed:
        session.execute(
            update(RecordRow)
            .where(RecordRow.id == rid)
            .values(invalid_ns=at, invalid_reason=why[:MAX_REASON_CHARS])
        )
    devices = sorted({device_id for _, device_id, _ in failed})
    for k in range(0, len(devices), 500):
        session.execute(
            update(DeviceRow)
            .where(one_of(DeviceRow.id, devices[k : k + 500]))
            .values(needs_verdict=True, dirty_seq=DeviceRow.dirty_seq + 1)
        )
