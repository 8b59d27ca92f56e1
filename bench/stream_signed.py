"""Signed records through Kafka to PostgreSQL: stream-worker records/s per core, 1 -> 2 workers.

Measured in the same run:
* the ceiling: the signature checks alone (`protocol.record.verify`), records per CPU-second of
  one thread;
* one worker process (fleet.signed_stream: parse, Service.ingest with every check, one
  PostgreSQL transaction per batch, offsets after it, verdicts every second): records per
  CPU-second of the worker process (all its threads), and records/s of wall time;
* two worker processes in one consumer group on the same kind of topic: records/s of wall
  time over the interval both were consuming, against one worker's; and the same pair of runs
  with each worker capped at a fraction of a CPU (bench.cpu_cap: a core of its own, slower,
  so that the ratio measures the workers rather than a machine with fewer cores than
  workers plus database plus broker);
* the ceiling again inside each worker, between its batches, and how long each batch's write
  transaction took (serial within one partition's audit chain, verifier.audit);
* two workers again with every write on the main audit chain (the design before per-partition
  chains): how long writes waited for their chain's lock, per stored record, in both designs;
* PostgreSQL's own insert rate here: rows of the records table per second, batches of 2,000.

    python -m bench.stream_signed [--records 24000] [--devices 1000] [--partitions 4]
        [--worker-cpu 0.4]

Needs $LIGHTFENCE_KAFKA_BOOTSTRAP (a broker; scripts/start-kafka.sh) and a PostgreSQL URL
($LIGHTFENCE_BENCH_PG_URL or $LIGHTFENCE_TEST_PG_URL); scratch schemas and topics are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import Table, func, insert, select

from bench.cpu_cap import CpuCap
from bench.verifier_ingest import LANDMARKS, Fixture, _pg_schema
from lightfence.protocol.record import MeasurementRecord, verify
from lightfence.protocol.record_topic import RecordPublisher
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.ingest import record_hash
from lightfence.verifier.models import DeviceRow, RecordRow
from lightfence.verifier.pgcopy import copy_records
from lightfence.verifier.service import Service

BATCH = 2000
TARGET_PER_CORE = 0.8
TARGET_SCALING = 1.7
FIXTURE_POLICY = "outside:CN,HK,MO"
"""The licence bench.verifier_ingest.Fixture enrols every device under."""
START_DELAY_S = 20.0
"""Workers start consuming together this long after launch: imports and the group join first."""


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot (Linux /proc/stat); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


class MachineLoad:
    """Samples the machine's CPU use every 0.25 s, so a run can say how busy all cores were
    while its workers consumed (the 1 -> 2 worker figure means little on a saturated machine)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            got = _machine_cpu()
            if got is not None:
                self.samples.append((time.time(), *got))
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def busy(self, start: float, end: float) -> float | None:
        """Share of all CPUs busy between `start` and `end` (epoch s), from the samples."""
        inside = [x for x in self.samples if start <= x[0] <= end]
        if len(inside) < 2:
            return None
        (_, b0, t0), (_, b1, t1) = inside[0], inside[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None


def signature_ceiling(fx: Fixture) -> float:
    """Records per CPU-second of the two signature checks alone, one thread, on records as a
    worker holds them (decoded; their signed bytes not yet encoded)."""
    keys = {lid: k.public_bytes for lid, k in fx.landmark_keys.items()}
    dev = {i.device_id: i.public_key for i in fx.identities}
    sample = [MeasurementRecord.from_json_dict(r.to_json_dict()) for r in fx.records[:3000]]
    t = time.process_time()
    for r in sample:
        verify(r, keys[r.landmark_id], dev[r.device_id])
    return len(sample) / (time.process_time() - t)


def pg_insert_rate(url: str, fx: Fixture) -> tuple[float, float]:
    """Rows/s into the records table, batches of 2,000, one transaction each: the multi-row
    INSERT (SQLAlchemy, as SQLite still does) and COPY (verifier.pgcopy, ingestion on
    PostgreSQL), half the rows each."""
    service = Service(VerifierConfig(db_url=url))
    fx.populate(service)
    table = RecordRow.__table__
    assert isinstance(table, Table)
    rows = [
        {
            "record_hash": record_hash(r),
            "device_id": r.device_id,
            "landmark_id": r.landmark_id,
            "session_id": r.session_id.hex(),
            "min_rtt_ns": r.min_rtt_ns,
            "measured_ns": r.measured_at_unix_ns,
            "received_ns": 0,
            "submitted_by": "bench",
        }
        for r in fx.records
    ]
    dicts = [{**row, "body": r.to_json_dict()} for row, r in zip(rows, fx.records, strict=True)]
    texts = [r.to_json_text() for r in fx.records]
    half = len(rows) // 2
    t = time.perf_counter()
    for k in range(0, half, BATCH):
        with service.db.write() as s:
            s.execute(insert(table).returning(table.c.id), dicts[k : min(k + BATCH, half)])
    insert_rate = half / (time.perf_counter() - t)
    t = time.perf_counter()
    for k in range(half, len(rows), BATCH):
        with service.db.write() as s:
            copy_records(s, rows[k : k + BATCH], texts[k : k + BATCH])
    copy_rate = (len(rows) - half) / (time.perf_counter() - t)
    service.close()
    return insert_rate, copy_rate


def _warm_policy() -> None:
    """One verdict like the fixture's, before the start gate: a process's first decide under a
    policy builds its region's indexes (seconds for outside:CN,HK,MO, more at a capped CPU),
    which would otherwise fall inside one run's window and not another's."""
    from lightfence.core.measurement import Landmark, Measurement
    from lightfence.core.policy import parse_policy
    from lightfence.core.verdict import decide

    policy = parse_policy(FIXTURE_POLICY)
    decide([Measurement(Landmark(lid, lat, lon), 0.6) for lid, (lat, lon) in LANDMARKS.items()],
           policy)  # fmt: skip


class InterleavedCeiling:
    """The ceiling measured inside a worker, between its batches: `verify` on SAMPLE records
    after each batch, as the worker holds them (decoded, signed bytes not yet encoded). This
    VM's CPU speed drifts by a fifth within a minute, so a ceiling taken before or after a run
    can differ from the one the run had; this one is taken within a second of every batch. Its
    CPU (main thread) is taken out of the worker's."""

    SAMPLE = 200

    def __init__(self) -> None:
        fx = Fixture(self.SAMPLE, 20)
        self.docs = [r.to_json_dict() for r in fx.records]
        self.landmark_keys = {lid: k.public_bytes for lid, k in fx.landmark_keys.items()}
        self.device_keys = {i.device_id: i.public_key for i in fx.identities}
        self.checked = 0
        self.verify_cpu_s = 0.0
        self.cpu_s = 0.0
        """All the CPU the samples cost, decoding included."""

    def sample(self) -> None:
        t0 = time.thread_time()
        fresh = [MeasurementRecord.from_json_dict(d) for d in self.docs]
        t1 = time.thread_time()
        for r in fresh:
            verify(r, self.landmark_keys[r.landmark_id], self.device_keys[r.device_id])
        t2 = time.thread_time()
        self.checked += len(fresh)
        self.verify_cpu_s += t2 - t1
        self.cpu_s += t2 - t0


def _child(
    url: str, bootstrap: str, topic: str, group: str, expected: int, start: float, one_chain: bool
) -> None:
    """One worker process: joins the group, holds its partitions paused until `start` (epoch
    s, so that every worker of a run starts consuming at once, after the group has settled),
    consumes until the database holds every record, then reports. `one_chain`: every write on
    the main audit chain, as before per-partition chains (the baseline of the lock figures)."""
    from confluent_kafka import Consumer, TopicPartition

    from lightfence.fleet.signed_stream import (
        SignedStreamConfig,
        SignedStreamWorker,
        settle_heap,
    )

    class Gated(SignedStreamWorker):
        def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
            super()._on_assign(consumer, parts)
            if time.time() < start:
                consumer.pause(parts)

        def _chains(self, partitions: Collection[int]) -> list[int]:
            return [] if one_chain else super()._chains(partitions)

    ceiling = InterleavedCeiling()
    _warm_policy()
    service = Service(VerifierConfig(db_url=url, verify_threads=1), migrate=False)  # CLI default
    worker = Gated(service, SignedStreamConfig(bootstrap, topic, group, BATCH))
    settle_heap()  # as `lightfence stream-worker` does
    marks: list[tuple[float, int, float, float]] = []
    last_check = [0.0]
    gated = [True]

    def done() -> bool:
        if gated[0] and time.time() >= start:
            worker.consumer.resume(worker.consumer.assignment())
            gated[0] = False
        n = worker.stats.messages
        if not marks or marks[-1][1] != n:
            if n:
                ceiling.sample()
            marks.append((time.time(), n, _cpu_s() - ceiling.cpu_s, worker.stats.recompute_cpu_s))
        if time.monotonic() - last_check[0] < 0.2:
            return False
        last_check[0] = time.monotonic()
        with service.read() as s:
            stored = s.execute(select(func.count()).select_from(RecordRow)).scalar_one()
            waiting = s.execute(
                select(func.count()).select_from(DeviceRow).where(DeviceRow.needs_verdict)
            ).scalar_one()
        return bool(stored >= expected and waiting == 0)

    stats = worker.run(done)
    cpu = _cpu_s() - ceiling.cpu_s
    marks.append((time.time(), worker.stats.messages, cpu, worker.stats.recompute_cpu_s))
    service.close()
    hist = service.metrics.ingest_write_seconds
    write_s = next(s.value for m in hist.collect() for s in m.samples if s.name.endswith("_sum"))
    waits = service.metrics.audit_lock_wait_seconds
    wait_s = sum(s.value for m in waits.collect() for s in m.samples if s.name.endswith("_sum"))
    out = {
        "marks": marks,
        "stored": stats.stored,
        "verdicts": stats.verdicts,
        "write_s": write_s,
        "lock_wait_s": wait_s,
    }
    print(json.dumps({**out, "ceiling": [ceiling.checked, ceiling.verify_cpu_s]}))


def run_workers(
    base_pg: str,
    bootstrap: str,
    fx: Fixture,
    n_workers: int,
    partitions: int,
    cpu_cap: float | None = None,
    *,
    one_chain: bool = False,
) -> dict[str, Any]:
    """One run of `n_workers` worker processes over `fx`'s records; each capped at `cpu_cap` of
    a CPU if given (bench.cpu_cap); with `one_chain`, all writing the main audit chain."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    topic, group = f"bench-signed-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(15)
    publisher = RecordPublisher(bootstrap, topic)
    publisher.publish([r.to_json_dict() for r in fx.records])
    publisher.close()
    with _pg_schema(base_pg) as url:
        service = Service(VerifierConfig(db_url=url))
        fx.populate(service)
        service.close()
        argv = [sys.executable, "-m", "bench.stream_signed", "--child", url, bootstrap, topic]
        # A capped worker starts slower (imports and connections at a fraction of a CPU).
        delay_s = START_DELAY_S if cpu_cap is None else START_DELAY_S / cpu_cap
        argv += [group, str(len(fx.records)), str(time.time() + delay_s), str(int(one_chain))]
        load = MachineLoad()
        caps = [CpuCap(cpu_cap) for _ in range(n_workers)] if cpu_cap is not None else []
        procs = [
            subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=caps[i].enter() if caps else None,
            )
            for i in range(n_workers)
        ]
        try:
            outs = [
                json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1]) for p in procs
            ]
        finally:
            load.stop()
            for p in procs:
                p.kill()
                p.wait()
            for cap in caps:
                cap.remove()
    marks = [o["marks"] for o in outs]
    busy = [m for m in marks if m[-1][1] > 0]
    # Records per CPU-second of each worker, from the end of its first batch (start-up, group
    # join and the first batch's connections excluded) to its end (last verdicts included).
    firsts = [next(x for x in m if x[1] > 0) for m in busy]
    cpu = sum(m[-1][2] - f[2] for m, f in zip(busy, firsts, strict=True))
    recompute_cpu = sum(m[-1][3] - f[3] for m, f in zip(busy, firsts, strict=True))
    records = sum(m[-1][1] - f[1] for m, f in zip(busy, firsts, strict=True))
    # Wall rate over the interval every worker was consuming (its first batch to its last).
    start = max(next(t for t, n, *_ in m if n > 0) for m in busy)
    end = min(next(t for t, n, *_ in m if n == m[-1][1]) for m in busy)
    end = max(end, start + 1e-3)

    def count_at(m: list[list[float]], when: float) -> float:
        return max([n for t, n, *_ in m if t <= when] or [0])

    in_window = sum(count_at(m, end) - count_at(m, start) for m in busy)
    return {
        "per_cpu_s": records / cpu if cpu > 0 else 0.0,
        "ingest_per_cpu_s": records / (cpu - recompute_cpu) if cpu > recompute_cpu else 0.0,
        "recompute_share": recompute_cpu / cpu if cpu > 0 else 0.0,
        "wall_rate": in_window / (end - start),
        "wall_s": end - start,
        "stored": sum(o["stored"] for o in outs),
        "verdicts": sum(o["verdicts"] for o in outs),
        "idle_workers": len(marks) - len(busy),
        "machine_busy": load.busy(start, end),
        "write_s_per_record": sum(o["write_s"] for o in outs)
        / max(sum(o["stored"] for o in outs), 1),
        "lock_wait_s_per_record": sum(o["lock_wait_s"] for o in outs)
        / max(sum(o["stored"] for o in outs), 1),
        "interleaved_ceiling": sum(o["ceiling"][0] for o in outs)
        / max(sum(o["ceiling"][1] for o in outs), 1e-9),
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(argv[1], argv[2], argv[3], argv[4], int(argv[5]), float(argv[6]), argv[7] == "1")
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=24000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument(
        "--pg",
        default=os.environ.get("LIGHTFENCE_BENCH_PG_URL")
        or os.environ.get("LIGHTFENCE_TEST_PG_URL"),
    )
    ap.add_argument("--bootstrap", default=os.environ.get("LIGHTFENCE_KAFKA_BOOTSTRAP"))
    ap.add_argument(
        "--worker-cpu",
        type=float,
        default=0.4,
        help="also run 1 and 2 workers each capped at this fraction of a CPU (a core of its "
        "own, slower; bench/cpu_cap.py); 0 skips it",
    )
    args = ap.parse_args(argv)
    if not args.pg or not args.bootstrap:
        print("  (skipped: needs a PostgreSQL URL and LIGHTFENCE_KAFKA_BOOTSTRAP)")
        return
    print(
        f"signed stream: {args.records} records, {args.devices} devices, "
        f"{args.partitions} partitions, batches of {BATCH}; load {os.getloadavg()}"
    )
    fx = Fixture(args.records, args.devices)
    ceiling = signature_ceiling(fx)
    one = run_workers(args.pg, args.bootstrap, fx, 1, args.partitions)
    ceiling_after = signature_ceiling(fx)
    fx2 = Fixture(args.records, args.devices)
    two = run_workers(args.pg, args.bootstrap, fx2, 2, args.partitions)
    two_one_chain = run_workers(
        args.pg, args.bootstrap, Fixture(args.records, args.devices), 2, args.partitions,
        one_chain=True,
    )  # fmt: skip
    capped: tuple[dict[str, Any], dict[str, Any]] | None = None
    if args.worker_cpu > 0 and CpuCap.available():
        n = max(args.records // 2, 4000)  # a capped worker is slower: half the records
        capped = (
            run_workers(args.pg, args.bootstrap, Fixture(n, args.devices), 1, args.partitions,
                        args.worker_cpu),
            run_workers(args.pg, args.bootstrap, Fixture(n, args.devices), 2, args.partitions,
                        args.worker_cpu),
        )  # fmt: skip
    with _pg_schema(args.pg) as url:
        insert_rate, copy_rate = pg_insert_rate(url, Fixture(args.records, args.devices))
    sig = (ceiling + ceiling_after) / 2
    print(f"  signature checks alone: {ceiling:.0f} / {ceiling_after:.0f} records per CPU-s "
          f"(before / after the 1-worker run)")  # fmt: skip
    inner = one["interleaved_ceiling"]
    print(f"  signature checks alone, inside the 1-worker run between its batches: {inner:.0f} "
          f"records per CPU-s")  # fmt: skip
    print(f"  1 worker: {one['ingest_per_cpu_s']:.0f} records per worker CPU-s in ingestion "
          f"({one['ingest_per_cpu_s'] / inner:.2f}x the interleaved ceiling; "
          f"{one['ingest_per_cpu_s'] / sig:.2f}x before/after; target {TARGET_PER_CORE}x); "
          f"{one['per_cpu_s']:.0f} with its verdict passes ({one['recompute_share']:.0%} of its "
          f"CPU, {one['verdicts']} verdicts); {one['wall_rate']:.0f} records/s wall over "
          f"{one['wall_s']:.1f} s")  # fmt: skip
    for name, run in (("1 worker", one), ("2 workers", two)):
        busy = run["machine_busy"]
        if busy is not None:
            print(f"  machine CPU busy while {name} consumed: {busy:.0%} of {os.cpu_count()} CPUs")
    print(f"  2 workers: {two['ingest_per_cpu_s']:.0f} records per worker CPU-s in ingestion "
          f"({two['ingest_per_cpu_s'] / two['interleaved_ceiling']:.2f}x their interleaved "
          f"ceiling), "
          f"{two['wall_rate']:.0f} records/s wall over {two['wall_s']:.1f} s: "
          f"{two['wall_rate'] / one['wall_rate']:.2f}x one worker "
          f"(target {TARGET_SCALING}x)")  # fmt: skip
    if capped is not None:
        c1, c2 = capped
        print(f"  each worker capped at {args.worker_cpu:.0%} of a CPU (a core of its own): "
              f"1 worker {c1['wall_rate']:.0f} records/s, 2 workers {c2['wall_rate']:.0f}: "
              f"{c2['wall_rate'] / c1['wall_rate']:.2f}x (target {TARGET_SCALING}x); machine "
              f"busy {c1['machine_busy'] or 0:.0%} / {c2['machine_busy'] or 0:.0%}; per worker "
              f"CPU-s {c1['ingest_per_cpu_s']:.0f} / {c2['ingest_per_cpu_s']:.0f} in "
              f"ingestion")  # fmt: skip
    elif args.worker_cpu > 0:
        print("  (capped-worker runs skipped: they need root and the cgroup cpu controller)")
    serial = one["write_s_per_record"]
    print(f"  write transaction per stored record (1 worker): {serial * 1e6:.0f} us: the "
          f"transactions of one partition's audit chain are serial, so at most "
          f"{1 / serial:.0f} records/s per partition on this machine; partitions' chains "
          f"write side by side (verifier.audit)")  # fmt: skip
    waits = [run["lock_wait_s_per_record"] * 1e6 for run in (two, two_one_chain)]
    print(f"  2 workers, audit lock wait per stored record: {waits[0]:.1f} us with a chain per "
          f"partition, {waits[1]:.1f} "
          f"us with one chain for both (the old design); {two['wall_rate']:.0f} / "
          f"{two_one_chain['wall_rate']:.0f} records/s wall "
          f"({two['wall_rate'] / two_one_chain['wall_rate']:.2f}x)")  # fmt: skip
    print(f"  PostgreSQL into records, batches of {BATCH}: multi-row INSERT {insert_rate:.0f} "
          f"rows/s, COPY {copy_rate:.0f} rows/s")  # fmt: skip
    print(f"  load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
