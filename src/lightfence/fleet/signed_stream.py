"""Stream workers for SIGNED records: Kafka in, the verifier's own checks, PostgreSQL out.

A consumer-group member reads record messages (protocol.record_topic: key = device id, value =
the record's JSON form as POST /records takes it) and hands each batch to `Service.ingest`, the
code POST /records runs: signatures, freshness, registry and replay checks, one write
transaction that stores the records once (by record hash), keeps rejections, raises alerts and
appends to its partitions' audit chain (below). Verdicts come from `Service.recompute`, the
same pass the API runs, for the devices this worker stored records of. The API and dashboard
read the same database.

Exactly once per record and per verdict, without broker transactions (docs/fleet.md):

1. a batch's records are stored in one database transaction, idempotently: a record already
   stored (same signed bytes) is acknowledged as a duplicate and not written again;
2. offsets are committed only after that transaction commits; a crash before the commit
   replays the batch, whose records then come back as duplicates;
3. a stored record marks its device for a verdict in the same transaction, and a verdict is
   stored only for a device still marked at the same `dirty_seq` (verifier.verdicts), so each
   set of inputs lands in the history once, whichever worker or API replica decides it. A newly
   assigned partition may carry devices its crashed predecessor marked and never decided: the
   first pass after an assignment decides every marked device.

Audit: each partition has its own stream chain (verifier.audit, named
`kafka:<topic>:<partition>`), opened on the main chain the first time a worker writes for it. A
batch's transaction locks the heads of the partitions it holds and appends to the lowest one's
chain, so workers on different partitions no longer queue on one lock, while two members that
both believe they own a partition (a rebalance in flight) still take turns. A worker's verdict
passes go to the chain of its lowest partition. `audit verify` checks every chain and the
checkpoints sign every head.

Concurrent writers can now lock the same device rows in different orders (a sweep after an
assignment decides every marked device, whoever's partition it is on): PostgreSQL then aborts
one transaction as deadlocked, and the worker runs it again (nothing of it was written).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy.exc import DataError, IntegrityError

from lightfence.fleet.stream_metrics import StreamMetrics
from lightfence.model.text import one_line
from lightfence.protocol.record import MAX_ERROR_CHARS, MeasurementRecord, RecordError
from lightfence.protocol.record_topic import kafka_security_conf
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.db import again_if_rolled_back
from lightfence.verifier.ingest import Outcome
from lightfence.verifier.service import Service

log = logging.getLogger(__name__)

Fault = Callable[[str], None]
"""Test hook called at named points ("in_transaction", "after_db_commit"); production: none."""


@dataclass(frozen=True)
class SignedStreamConfig:
    bootstrap_servers: str
    topic: str
    group_id: str = "lightfence-verifier"
    poll_batch: int = 2000
    """Messages per database transaction, at most."""
    poll_timeout_s: float = 0.2
    recompute_interval_s: float = 1.0
    """Verdicts for this worker's devices at most this often: a device's records that arrive
    within one interval enter one verdict, not one verdict each."""
    session_timeout_ms: int = 6_000
    """Short, so a crashed worker's partitions move on quickly (and Tansu needs it short)."""


@dataclass
class SignedWorkerStats:
    messages: int = 0
    bad_messages: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    verdicts: int = 0
    batches: int = 0
    recompute_cpu_s: float = 0.0
    """CPU time of this process in verdict passes (the benchmark reports ingestion apart)."""


GC_YOUNG_THRESHOLD = 20_000
"""Container objects allocated (net) before a young collection. A batch's records are freed by
reference counting when it ends, so with this threshold a worker in steady state rarely
collects at all; Python's 700 made one collection per few records (2 to 4 us a record here)."""


def settle_heap() -> None:
    """For a process whose main loop is one worker: what start-up allocated (modules, the
    service, the consumer) moves out of the collector's sight, and young collections wait for
    GC_YOUNG_THRESHOLD objects. Process-wide, so the CLI and the benchmark call it, not the
    worker (tests run workers in threads of the test process)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def preload_policies(service: Service) -> list[str]:
    """Build the regions of the policies the enrolled devices are licensed under, before the
    worker consumes: a process's first verdict under a policy otherwise builds its region there
    (5 s of CPU for outside:CN,HK,MO), and the partitions wait. The policies built, in order; a
    stored text that no longer parses is logged and skipped (its devices' verdicts say why)."""
    from sqlalchemy import select

    from lightfence.core.policy import PolicyError, parse_policy
    from lightfence.verifier.models import DeviceRow

    started = time.monotonic()
    with service.read() as session:
        query = select(DeviceRow.policy).where(DeviceRow.retired_ns.is_(None)).distinct()
        texts = sorted(set(session.execute(query).scalars()))
    built = []
    for text in texts:
        try:
            parse_policy(text)  # core.policy caches the region for the process
        except PolicyError as exc:
            log.warning("policy %r of an enrolled device: %s", text, exc)
            continue
        built.append(text)
    log.info("policy regions built for %d licence(s) in %.1f s", len(built),
             time.monotonic() - started)  # fmt: skip
    return built


def parse_message(value: bytes | None) -> MeasurementRecord:
    """A record from its message; RecordError (with the record module's message) if not one."""
    return MeasurementRecord.from_json_message(value or b"")


class SignedStreamWorker:
    """One consumer-group member. `run()` polls until `should_stop()` says so."""

    def __init__(
        self,
        service: Service,
        config: SignedStreamConfig,
        *,
        metrics: StreamMetrics | None = None,
        fault: Fault | None = None,
    ) -> None:
        self.service, self.config = service, config
        self.metrics = metrics or StreamMetrics.on(service.metrics.registry)
        self.fault = fault or (lambda _point: None)
        self.stats = SignedWorkerStats()
        # Kafka's topic ACLs decide who may publish; each record is then checked on its own
        # signatures. The actor names the topic in rejections and the audit log.
        self.principal = Principal(name=f"kafka/{config.topic}", role=Role.ADMIN)
        self.owned: set[int] = set()
        self.chains: dict[int, int] = {}
        """Audit stream chain of each partition this worker has written for."""
        self._dirty: set[str] = set()
        self._sweep_all = False
        self._last_recompute = time.monotonic()
        self.consumer = Consumer(
            {
                **kafka_security_conf(),
                "bootstrap.servers": config.bootstrap_servers,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": config.session_timeout_ms,
                "heartbeat.interval.ms": max(config.session_timeout_ms // 6, 100),
            }
        )

    def _on_assign(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.owned.update(tp.partition for tp in parts)
        self._sweep_all = True  # the previous owner may have died with devices undecided
        log.info("assigned partitions %s", sorted(tp.partition for tp in parts))

    def _on_revoke(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        for tp in parts:
            self.owned.discard(tp.partition)
            self.metrics.forget(tp.partition)

    def run(self, should_stop: Callable[[], bool]) -> SignedWorkerStats:
        self.consumer.subscribe(
            [self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            self.service.rescore_blame()
            while not should_stop():
                self.step()
            self.recompute()
        finally:
            self.consumer.close()
        return self.stats

    def step(self) -> None:
        """Consume one batch, ingest it in one transaction, then commit its offsets."""
        messages = self.consumer.consume(self.config.poll_batch, self.config.poll_timeout_s)
        started = time.perf_counter()
        records, offsets = self._parse(messages)
        if records:
            chains = self._chains(offsets)
            try:
                outcomes = self._ingest(records, chains)
            except (DataError, IntegrityError) as exc:
                # One record the database refuses (text it cannot store, say) would otherwise
                # fail its batch on every replay and stall the partition: find it alone.
                log.warning(
                    "batch refused by the database (%s); ingesting one by one", _refusal(exc)
                )
                records, outcomes = self._ingest_singly(records, chains)
            self.fault("after_db_commit")
            self._tally(records, outcomes)
        if self._sweep_all or time.monotonic() - self._last_recompute >= (
            self.config.recompute_interval_s
        ):
            self.recompute()
        if offsets:
            self._commit(offsets)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            self.stats.batches += 1
        self._update_lag()

    def _chains(self, partitions: Collection[int]) -> list[int]:
        """The audit chains of `partitions`, opening those this worker has not used yet."""
        new = {f"kafka:{self.config.topic}:{p}": p for p in partitions if p not in self.chains}
        if new:
            opened = self.service.open_chains(list(new), self.principal.actor)
            self.chains.update({new[name]: chain for name, chain in opened.items()})
        return sorted(self.chains[p] for p in partitions)

    def _ingest(self, records: Sequence[MeasurementRecord], chains: list[int]) -> list[Outcome]:
        return again_if_rolled_back(
            lambda: self.service.ingest(
                records,
                self.principal,
                before_commit=lambda: self.fault("in_transaction"),
                chains=chains,
            )
        )

    def _ingest_singly(
        self, records: Sequence[MeasurementRecord], chains: list[int]
    ) -> tuple[list[MeasurementRecord], list[Outcome]]:
        """Each record in its own transaction; one the database refuses is counted as a bad
        message and logged (connection errors are not caught: the batch is replayed).

        A unique key refused once is tried again: a writer on another partition may have
        stored the same record, or another record of the same landmark session (a replay),
        while this one checked; by then it has committed, and the record comes back as a
        duplicate or a kept, alerted rejection, not as a bad message."""
        kept: list[MeasurementRecord] = []
        outcomes: list[Outcome] = []
        for rec in records:
            try:
                try:
                    out = self._ingest([rec], chains)
                except IntegrityError:  # once more: see above
                    out = self._ingest([rec], chains)
            except (DataError, IntegrityError) as exc:
                self.stats.bad_messages += 1
                self.metrics.bad_messages.inc()
                log.warning("record of device %r refused by the database: %s",
                            rec.device_id, _refusal(exc))  # fmt: skip
                continue
            outcomes.extend(out)
            kept.append(rec)
        return kept, outcomes

    def recompute(self) -> None:
        """Verdicts for the devices this worker stored records of (all marked devices, once
        after an assignment)."""
        devices = None if self._sweep_all else self._dirty
        if devices is None or devices:
            cpu = time.process_time()
            mine = sorted(p for p in self.owned if p in self.chains)
            chains = [self.chains[mine[0]]] if mine else []
            self.stats.verdicts += again_if_rolled_back(
                lambda: self.service.recompute_all(devices_of=devices, chains=chains)
            )
            self.stats.recompute_cpu_s += time.process_time() - cpu
        self._dirty = set()
        self._sweep_all = False
        self._last_recompute = time.monotonic()

    def _parse(self, messages: Sequence[Message]) -> tuple[list[MeasurementRecord], dict[int, int]]:
        records: list[MeasurementRecord] = []
        offsets: dict[int, int] = {}
        n = 0
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            n += 1
            partition, offset = msg.partition(), msg.offset()
            if partition is None or offset is None or partition not in self.owned:
                continue  # revoked meanwhile: the new owner replays it
            offsets[partition] = offset + 1
            try:
                records.append(parse_message(msg.value()))
            except RecordError as exc:
                # Not a record at all: nothing to check a signature on. Counted and logged;
                # skipping it keeps one bad producer from stalling its partition.
                self.stats.bad_messages += 1
                self.metrics.bad_messages.inc()
                log.warning(
                    "%s[%d] offset %d: not a record: %s", msg.topic(), partition, offset, exc
                )
        self.stats.messages += n
        if n:
            self.metrics.consumed(n)
        return records, offsets

    def _tally(self, records: Sequence[MeasurementRecord], outcomes: Sequence[Outcome]) -> None:
        for rec, out in zip(records, outcomes, strict=True):
            if out.status == "stored":
                self.stats.stored += 1
                self._dirty.add(rec.device_id)
            elif out.status == "duplicate":
                self.stats.duplicates += 1
            else:
                self.stats.rejected += 1

    def _commit(self, offsets: dict[int, int]) -> None:
        tps = [TopicPartition(self.config.topic, p, o) for p, o in sorted(offsets.items())]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            # A rebalance in flight: the next owner replays the batch, whose records are then
            # duplicates. Nothing is lost and nothing is stored twice.
            log.warning("offset commit failed: %s", exc)

    def _update_lag(self) -> None:
        lags: dict[int, int] = {}
        tps = [TopicPartition(self.config.topic, p) for p in sorted(self.owned)]
        if not tps:
            self.metrics.set_lag({})
            return
        for tp in self.consumer.position(tps):
            if tp.offset < 0:
                continue  # nothing consumed from it yet
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                lags[tp.partition] = max(high - tp.offset, 0)
        self.metrics.set_lag(lags)


def _refusal(exc: DataError | IntegrityError) -> str:
    # The database's message can quote the value it refused: a record's text, on one line.
    return one_line(str(exc.orig), MAX_ERROR_CHARS)


def worker_summary(stats: SignedWorkerStats) -> dict[str, Any]:
    return {
        "messages": stats.messages,
        "stored": stats.stored,
        "duplicates": stats.duplicates,
        "rejected": stats.rejected,
        "bad_messages": stats.bad_messages,
        "verdicts": stats.verdicts,
        "batches": stats.batches,
        "recompute_cpu_s": round(stats.recompute_cpu_s, 3),
    }
