"""Batch re-verification of the verifier's stored signed records, on Ray or in one process.

Reads the records the verifier stored (their signed JSON bodies, in its database: no side
channel), checks each again, and puts fresh verdicts into the verifier's own history:

1. the driver lists the devices with stored records and cuts them into chunks;
2. each chunk is one task (a Ray task, or a plain call with `engine="local"`): it reads the
   chunk's stored records and GPU rounds and the registry's current keys, checks that each body
   is the record its hash names and that the row's columns are the body's, re-checks the
   signatures (`protocol.record.verify`) and appraises each GPU round's evidence again
   (`protocol.gpu_round.verify_gpu_round`, its S_floor against the calibration: fleet.recheck),
   then decides the devices whose records and rounds all held with
   verifier.verdicts and verifier.gpu_verdicts (`read_pending`, `attach_gpu_inputs`,
   `decide_pending`, `refine`: the core's `decide_batch`, exactly as `Service.recompute`);
3. the driver, in one write per chunk, marks the decided devices for a verdict and stores the
   decisions with `store_decided` (the stream workers' and API's path, audited): a device that
   got a new record since its task read it (its `dirty_seq` moved) is left to the normal pass,
   which decides it on the newer inputs;
4. a record or GPU round that fails (its row edited behind the verifier's back, or its
   signatures or evidence no longer holding against the registry's keys and the GPU root) is
   marked invalid (`records.invalid_ns`, `gpu_rounds.invalid_ns`): no verdict uses it from
   then on. Its device gets a `rejected_evidence` alert and is decided again at
   once without it, so a verdict that rested on it (a VERIFIED, perhaps) does not stand.
   Rows already marked are not checked again (an attacker who clears the mark is found by
   the next pass), nor are rows measured before their landmark moved or was re-keyed: they
   count towards no verdict, and the key that signed them is no longer registered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lightfence.fleet.recheck import gpu_round_problem, record_problem
from lightfence.verifier import alerts, audit, gpu_verdicts, verdicts
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.db import Database
from lightfence.verifier.models import DeviceRow, GpuRoundRow, LandmarkRow, RecordRow
from lightfence.verifier.service import Service, gpu_checker
from lightfence.verifier.sqlin import one_of

CHUNK_DEVICES = 2000
MAX_REASON_CHARS = 500

Failure = tuple[int, str, str]
"""(row id, device id, why) of a stored row that no longer verifies."""


@dataclass
class ChunkResult:
    records: int = 0
    gpu_rounds: int = 0
    failed: list[Failure] = field(default_factory=list)
    """Key records that no longer verify."""
    failed_gpu: list[Failure] = field(default_factory=list)
    """GPU rounds that no longer verify."""
    decided: list[verdicts.Decided] = field(default_factory=list)


@dataclass
class ReverifyReport:
    devices: int = 0
    records: int = 0
    gpu_rounds: int = 0
    verdicts: int = 0
    failed: list[Failure] = field(default_factory=list)
    failed_gpu: list[Failure] = field(default_factory=list)


def check_chunk(db_url: str, device_ids: Sequence[str], config: VerifierConfig) -> ChunkResult:
    """One task: re-check the chunk's stored records and GPU rounds, decide the devices whose
    rows all held."""
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
                if _before_position(row, since, skew_ns):
                    continue
                why = record_problem(
                    row, landmarks.get(row.landmark_id), devices.get(row.device_id)
                )
                if why is not None:
                    out.failed.append((row.id, row.device_id, why))
            out.records = len(rows)
            rounds = (
                s.execute(
                    select(GpuRoundRow).where(
                        one_of(GpuRoundRow.device_id, device_ids), GpuRoundRow.invalid_ns.is_(None)
                    )
                )
                .scalars()
                .all()
            )
            gpu = gpu_checker(config) if rounds else None
            for r in rounds:
                assert gpu is not None
                if _before_position(r, since, skew_ns):
                    continue
                why = gpu_round_problem(r, landmarks.get(r.landmark_id), gpu)
                if why is not None:
                    out.failed_gpu.append((r.id, r.device_id, why))
            out.gpu_rounds = len(rounds)
            bad = {d for _, d, _ in out.failed + out.failed_gpu}
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


def _before_position(row: Any, since: dict[str, int], skew_ns: int) -> bool:
    """Measured before its landmark moved or was re-keyed: it counts towards no verdict
    (verifier.verdicts, verifier.gpu_verdicts), and its key is no longer there to check it."""
    start = since.get(row.landmark_id, 0)
    return bool(start) and int(row.measured_ns) < start + skew_ns


def _devices_with_records(service: Service) -> list[str]:
    """Enrolled devices with stored records or GPU rounds; a retired device gets no new verdict
    (as on the verifier's own path, where its records are refused)."""
    with service.read() as s:
        live = select(DeviceRow.id).where(DeviceRow.retired_ns.is_(None))
        keyed = select(RecordRow.device_id).distinct().where(RecordRow.device_id.in_(live))
        gpu = select(GpuRoundRow.device_id).distinct().where(GpuRoundRow.device_id.in_(live))
        return sorted(set(s.execute(keyed).scalars()) | set(s.execute(gpu).scalars()))


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
        for table, failed, what, action in (
            (RecordRow, result.failed, "record", "record.reverify_failed"),
            (GpuRoundRow, result.failed_gpu, "GPU round", "gpu_round.reverify_failed"),
        ):
            if not failed:
                continue
            _exclude(s, table, failed)
            for rid, device_id, why in failed:
                alerts.raise_alert(
                    s,
                    kind=alerts.AlertKind.REJECTED_EVIDENCE,
                    device_id=device_id,
                    message=f"stored {what} {rid} fails re-verification: {why}",
                    now_ns=now_ns(),
                )
            audit.append(
                s,
                actor="system",
                action=action,
                subject=f"{len(failed)} {what}(s) excluded from verdicts",
                payload={"failed": [list(f) for f in failed]},
                now_ns=now_ns(),
            )
    return len(stored)


def reverify(
    service: Service,
    *,
    engine: str = "local",
    chunk: int = CHUNK_DEVICES,
    progress: Callable[[int, int], None] | None = None,
) -> ReverifyReport:
    """Re-check every stored record and GPU round and store fresh verdicts. `engine`: local or
    ray (Ray must be started: fleet.engine_ray.start_ray). `progress(devices done, devices)`
    is called after each chunk is stored."""
    device_ids = _devices_with_records(service)
    report = ReverifyReport(devices=len(device_ids))
    if not device_ids:
        return report
    chunks = [device_ids[k : k + chunk] for k in range(0, len(device_ids), chunk)]
    url, config = service.db.url, service.config
    done = 0

    def store(result: ChunkResult, size: int) -> None:
        nonlocal done
        report.records += result.records
        report.gpu_rounds += result.gpu_rounds
        report.failed.extend(result.failed)
        report.failed_gpu.extend(result.failed_gpu)
        report.verdicts += _store(service, result)
        done += size
        if progress is not None:
            progress(done, len(device_ids))

    if engine == "ray":
        import ray

        task = ray.remote(check_chunk)
        sizes = {task.remote(url, c, config): len(c) for c in chunks}
        waiting = list(sizes)
        while waiting:  # stored as each task ends: progress, and no pile of results
            ready, waiting = ray.wait(waiting, num_returns=1)
            store(ray.get(ready[0]), sizes[ready[0]])
    elif engine == "local":
        for c in chunks:
            store(check_chunk(url, c, config), len(c))
    else:
        raise ValueError(f"unknown engine {engine!r}; use local or ray")
    if report.failed or report.failed_gpu:
        # The devices of excluded rows, decided now on what remains.
        failed_devices = {device_id for _, device_id, _ in report.failed + report.failed_gpu}
        report.verdicts += service.recompute_all(devices_of=failed_devices)
    return report


def _exclude(
    session: Session, table: type[RecordRow] | type[GpuRoundRow], failed: Sequence[Failure]
) -> None:
    """Mark the failed rows invalid and their devices for a verdict."""
    at = now_ns()
    for rid, _, why in failed:
        session.execute(
            update(table)
            .where(table.id == rid)
            .values(invalid_ns=at, invalid_reason=why[:MAX_REASON_CHARS])
        )
    devices = sorted({device_id for _, device_id, _ in failed})
    for k in range(0, len(devices), 500):
        session.execute(
            update(DeviceRow)
            .where(one_of(DeviceRow.id, devices[k : k + 500]))
            .values(needs_verdict=True, dirty_seq=DeviceRow.dirty_seq + 1)
        )
