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
   marked invalid (`records.invalid_ns`, `gpu_rounds.invalid_ns`): no verdict uses it while
   marked. Its device gets a `tampered_evidence` alert and is decided again at once without
   it, so a verdict that rested on it (a VERIFIED, perhaps) does not stand;
5. marked rows are checked too, every pass: one that holds now loses its mark (audited) and
   counts again. A mark is what the last pass found, not a verdict for ever: a pass run with
   settings other than the verifier's (no `--config`: no S_floor calibration) is undone by the
   next one run with them, and a mark set with SQL on an honest row (to drop evidence that
   refutes) does not outlive the next pass. An attacker who clears a mark is found again.
   Rows measured before their landmark moved or was re-keyed are not checked: they count
   towards no verdict, and the key that signed them is no longer registered.

The read is one snapshot (REPEATABLE READ on PostgreSQL): keys, rows and verdict inputs from
the same moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lightfence.fleet.recheck import (
    NOT_COUNTED,
    REAPPRAISAL_FAILED,
    gpu_round_problem,
    record_problem,
)
from lightfence.model.text import one_line
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
    restored: list[Failure] = field(default_factory=list)
    """Key records marked invalid that verify now."""
    restored_gpu: list[Failure] = field(default_factory=list)
    """GPU rounds marked invalid that verify now."""
    decided: list[verdicts.Decided] = field(default_factory=list)


@dataclass
class ReverifyReport:
    devices: int = 0
    records: int = 0
    gpu_rounds: int = 0
    verdicts: int = 0
    failed: list[Failure] = field(default_factory=list)
    failed_gpu: list[Failure] = field(default_factory=list)
    restored: list[Failure] = field(default_factory=list)
    restored_gpu: list[Failure] = field(default_factory=list)


def check_chunk(db_url: str, device_ids: Sequence[str], config: VerifierConfig) -> ChunkResult:
    """One task: re-check the chunk's stored records and GPU rounds, marked ones too, and decide
    the devices whose rows all held."""
    db = Database(db_url)
    out = ChunkResult()
    try:
        with db.read() as s:
            if s.get_bind().dialect.name == "postgresql":
                # One snapshot for the keys, the rows and the verdict inputs: a re-key between
                # two statements would otherwise check honest rows against the old key.
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            _check_rows(s, device_ids, config, out)
            retired = set(
                s.execute(
                    select(DeviceRow.id).where(
                        one_of(DeviceRow.id, device_ids), DeviceRow.retired_ns.is_not(None)
                    )
                ).scalars()
            )
            bad = {d for _, d, _ in out.failed + out.failed_gpu} | retired
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


def _check_rows(
    s: Session, device_ids: Sequence[str], config: VerifierConfig, out: ChunkResult
) -> None:
    """Fill `out` with the rows that fail and are not marked yet, and the marked rows that hold
    now (marked by another pass with other settings, or by hand: either way the mark no longer
    says what the row is)."""
    devices = {
        d: bytes.fromhex(pub)
        for d, pub in s.execute(
            select(DeviceRow.id, DeviceRow.public_key).where(one_of(DeviceRow.id, device_ids))
        )
    }
    landmarks = {
        lid: (bytes.fromhex(pub), int(since))
        for lid, pub, since in s.execute(
            select(LandmarkRow.id, LandmarkRow.public_key, LandmarkRow.position_since_ns)
        )
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
            RecordRow.invalid_ns,
        ).where(one_of(RecordRow.device_id, device_ids))
    ).all()
    for row in rows:
        lm = landmarks.get(row.landmark_id)
        try:
            why = record_problem(
                row, lm and lm[0], devices.get(row.device_id), _counts_from(lm, skew_ns)
            )
        except (ValueError, TypeError) as exc:  # SQLite stores text in an integer column
            why = f"malformed row: {exc}"
        _sort(row, why, out.failed, out.restored)
    out.records = len(rows)
    rounds = (
        s.execute(select(GpuRoundRow).where(one_of(GpuRoundRow.device_id, device_ids)))
        .scalars()
        .all()
    )
    gpu = gpu_checker(config) if rounds else None
    for r in rounds:
        assert gpu is not None
        lm = landmarks.get(r.landmark_id)
        try:
            why = gpu_round_problem(r, lm and lm[0], gpu, _counts_from(lm, skew_ns))
        except (ValueError, TypeError) as exc:
            why = f"malformed row: {exc}"
        _sort(r, why, out.failed_gpu, out.restored_gpu)
    out.gpu_rounds = len(rounds)


def _sort(row: Any, why: str | None, failed: list[Failure], restored: list[Failure]) -> None:
    if why == NOT_COUNTED:
        return
    if why is not None and row.invalid_ns is None:
        # Bounded once, here: the reason quotes what the row holds (an edited body's fields, a
        # malformed column), and goes on into an alert, an audit entry, the column and the CLI.
        failed.append((row.id, row.device_id, one_line(why, MAX_REASON_CHARS)))
    elif why is None and row.invalid_ns is not None:
        restored.append((row.id, row.device_id, "holds again"))


def _counts_from(landmark: tuple[bytes, int] | None, skew_ns: int) -> int:
    """From when a landmark's rows count: a row measured before it was taken before the
    landmark moved or was re-keyed (verifier.verdicts, verifier.gpu_verdicts)."""
    since_ns = landmark[1] if landmark is not None else 0
    return since_ns + skew_ns if since_ns else 0


def floors_without_calibration(service: Service) -> bool:
    """Whether stored GPU rounds have an S_floor while the service has no calibration: a pass
    would find every such floor too high and exclude the rounds. Run without the verifier's
    settings, that is a mistake (`lightfence reverify` refuses it without --config); with them,
    it is what the pass is for (the calibration was withdrawn, or a floor was forged)."""
    if service.gpu.calibration.floors_ns:
        return False
    with service.read() as s:
        floored = s.execute(select(GpuRoundRow.id).where(GpuRoundRow.floor_ns > 0).limit(1))
        return floored.first() is not None


def newest_round_unappraised(service: Service) -> str | None:
    """Why the newest unmarked GPU round fails re-appraisal under the service's GPU root, or
    None. A pass whose root is not the verifier's would exclude every round; `lightfence
    reverify` without --config refuses to run when even the newest one fails."""
    with service.read() as s:
        row = s.execute(
            select(GpuRoundRow)
            .where(GpuRoundRow.invalid_ns.is_(None))
            .order_by(GpuRoundRow.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if row is None:
            return None
        key = s.execute(
            select(LandmarkRow.public_key).where(LandmarkRow.id == row.landmark_id)
        ).scalar_one_or_none()
        why = gpu_round_problem(row, None if key is None else bytes.fromhex(key), service.gpu)
    return why if why and why.startswith(REAPPRAISAL_FAILED) else None


def _devices_with_records(service: Service) -> list[str]:
    """Devices with stored records or GPU rounds, retired ones too: their rows are checked
    (a refuting row moved onto a retired device would otherwise be seen by no one), though a
    retired device gets no new verdict (as on the verifier's own path)."""
    with service.read() as s:
        keyed = select(RecordRow.device_id).distinct()
        gpu = select(GpuRoundRow.device_id).distinct()
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
                    kind=alerts.AlertKind.TAMPERED_EVIDENCE,
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
        for table, restored, what, action in (
            (RecordRow, result.restored, "record", "record.reverify_restored"),
            (GpuRoundRow, result.restored_gpu, "GPU round", "gpu_round.reverify_restored"),
        ):
            if not restored:
                continue
            _restore(s, table, restored)
            audit.append(
                s,
                actor="system",
                action=action,
                subject=f"{len(restored)} {what}(s) verify again and count again",
                payload={"restored": [[rid, device_id] for rid, device_id, _ in restored]},
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
        report.restored.extend(result.restored)
        report.restored_gpu.extend(result.restored_gpu)
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
    changed = report.failed + report.failed_gpu + report.restored + report.restored_gpu
    if changed:
        # The live devices of excluded and restored rows, decided now on what counts.
        with service.read() as s:
            live = set(
                s.execute(
                    select(DeviceRow.id).where(
                        one_of(DeviceRow.id, sorted({d for _, d, _ in changed})),
                        DeviceRow.retired_ns.is_(None),
                    )
                ).scalars()
            )
        if live:
            report.verdicts += service.recompute_all(devices_of=live)
    return report


def _exclude(
    session: Session, table: type[RecordRow] | type[GpuRoundRow], failed: Sequence[Failure]
) -> None:
    """Mark the failed rows invalid and their devices for a verdict."""
    at = now_ns()
    for rid, _, why in failed:
        session.execute(
            update(table).where(table.id == rid).values(invalid_ns=at, invalid_reason=why)
        )
    _mark_devices(session, failed)


def _restore(
    session: Session, table: type[RecordRow] | type[GpuRoundRow], restored: Sequence[Failure]
) -> None:
    """Clear the marks of rows that verify again, and mark their devices for a verdict."""
    for rid, _, _ in restored:
        session.execute(
            update(table).where(table.id == rid).values(invalid_ns=None, invalid_reason=None)
        )
    _mark_devices(session, restored)


def _mark_devices(session: Session, rows: Sequence[Failure]) -> None:
    """The live devices of `rows`, marked for a verdict (a retired one gets none)."""
    devices = sorted({device_id for _, device_id, _ in rows})
    for k in range(0, len(devices), 500):
        session.execute(
            update(DeviceRow)
            .where(one_of(DeviceRow.id, devices[k : k + 500]), DeviceRow.retired_ns.is_(None))
            .values(needs_verdict=True, dirty_seq=DeviceRow.dirty_seq + 1)
        )
