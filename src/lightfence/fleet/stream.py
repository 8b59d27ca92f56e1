"""Stream workers: measurements from a Kafka-protocol topic in, a verdict per (device, window) out.

Topics. `measurements`: key = device id, value = JSON with the kernel's columns plus
`measured_at_ms` and `landmark_id` (windows.Record). `verdicts`: key = device id, value = JSON
{device_id, window_start_ms, window_ms, verdict, n_landmarks, policy, bound}. The verdicts topic
must have at least as many partitions as the measurements topic: the verdict of a window read
from input partition p is written to output partition p.

Exactly once per (device, window), under worker crashes and restarts, without broker
transactions (design and reasons in docs/fleet.md):

1. A worker that is assigned input partition p first reads output partition p from the start
   to its end and collects the (device, window) keys already emitted there.
2. Closed windows (windows.PartitionWindows) whose key is not in that set are decided by the
   kernel, produced with an idempotent producer, and flushed: the broker has them.
3. Only then is input offset = the first offset of the oldest still-open window committed.

A crash before 2 completes replays the input from the last commit and emits what is missing;
a crash between 2 and 3 replays it too, and step 1 finds the verdicts already there. The
idempotent producer removes the duplicates its own retries could cause. What this does not
fence is a *zombie*: a worker that was paused past its session timeout and keeps producing
after its partitions moved. Production deployments on Apache Kafka should therefore also set
`transactional_id` (StreamConfig), which turns step 2-3 into one Kafka transaction and fences
zombies; the dedupe of step 1 stays as a second line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from lightfence.core.policy import parse_policy
from lightfence.fleet.kernel import verdicts_for_frame
from lightfence.fleet.windows import (
    BadRecord,
    ClosedWindow,
    PartitionWindows,
    Record,
    WindowKey,
)
from lightfence.protocol.record_topic import kafka_security_conf

log = logging.getLogger(__name__)

DEDUPE_READ_TIMEOUT_S = 60.0
"""A partition's verdicts must be read in full before its input is touched; else fail loudly."""

Fault = Callable[[str], None]
"""Test hook called at named points ("after_flush", ...); production passes none."""


@dataclass(frozen=True)
class StreamConfig:
    bootstrap_servers: str
    measurements_topic: str
    verdicts_topic: str
    group_id: str
    policy: str = "outside:CN,HK,MO"
    bound: str = "vacuum"
    window_ms: int = 3_600_000
    lateness_ms: int = 60_000
    session_timeout_ms: int = 6_000
    """Short, so a crashed worker's partitions move on quickly (and Tansu needs it short)."""
    poll_batch: int = 500
    transactional_id: str | None = None

    def client(self) -> dict[str, Any]:
        return {**kafka_security_conf(), "bootstrap.servers": self.bootstrap_servers}


@dataclass
class WorkerStats:
    records: int = 0
    bad_records: int = 0
    late_records: int = 0
    verdicts: int = 0
    duplicates_skipped: int = 0


class StreamWorker:
    """One consumer-group member. `run()` polls until `should_stop()` says so."""

    def __init__(self, config: StreamConfig, fault: Fault | None = None) -> None:
        self.config = config
        self.policy = parse_policy(config.policy, config.bound)
        self.fault = fault or (lambda _point: None)
        self.stats = WorkerStats()
        self.partitions: dict[int, PartitionWindows] = {}
        self._committed: dict[int, int] = {}
        self.consumer = Consumer(
            {
                **config.client(),
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": config.session_timeout_ms,
                "heartbeat.interval.ms": max(config.session_timeout_ms // 6, 100),
            }
        )
        producer_conf = {**config.client(), "enable.idempotence": True, "acks": "all"}
        if config.transactional_id:
            producer_conf["transactional.id"] = config.transactional_id
        self.producer = Producer(producer_conf)
        if config.transactional_id:
            self.producer.init_transactions(30)

    # -- assignment ---------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        for tp in parts:
            self._committed.pop(tp.partition, None)
            emitted = self._emitted_keys(tp.partition)
            self.partitions[tp.partition] = PartitionWindows(
                self.config.window_ms, self.config.lateness_ms, emitted
            )
            log.info(
                "assigned partition %d; %d windows already emitted", tp.partition, len(emitted)
            )

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # Uncommitted work is replayed by the next owner; nothing is half-kept here.
        for tp in parts:
            self.partitions.pop(tp.partition, None)
            self._committed.pop(tp.partition, None)

    def _emitted_keys(self, partition: int) -> set[WindowKey]:
        """Every (device, window) already in output partition `partition`."""
        reader = Consumer(
            {
                **self.config.client(),
                "group.id": f"{self.config.group_id}.dedupe",
                "enable.auto.commit": False,
                "enable.partition.eof": True,  # transaction markers take offsets: stop at EOF
                "isolation.level": "read_committed",
            }
        )
        try:
            tp = TopicPartition(self.config.verdicts_topic, partition)
            low, high = reader.get_watermark_offsets(tp, timeout=10)
            keys: set[WindowKey] = set()
            if high <= low:
                return keys
            # Read to end-of-partition, not to `high`: Tansu 0.6 reports the high watermark as
            # the last batch's base offset + 1, short of the batch's last record.
            reader.assign([TopicPartition(self.config.verdicts_topic, partition, low)])
            deadline = time.monotonic() + DEDUPE_READ_TIMEOUT_S
            while True:
                if time.monotonic() > deadline:
                    raise KafkaException(f"could not read {tp.topic}[{partition}] to its end")
                msg = reader.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return keys
                    raise KafkaException(err)
                data = json.loads(msg.value() or b"{}")
                keys.add((str(data["device_id"]), int(data["window_start_ms"])))
        finally:
            reader.close()

    # -- the loop -------------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> WorkerStats:
        self.consumer.subscribe(
            [self.config.measurements_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            while not should_stop():
                self.step()
        finally:
            self.consumer.close()
            self.producer.flush(10)
        return self.stats

    def step(self, timeout_s: float = 0.5) -> None:
        """Poll once, emit every window that closed, commit what is safe."""
        messages = self.consumer.consume(self.config.poll_batch, timeout_s)
        for msg in messages:
            self._ingest(msg)
        closed = {p: w.take_closed() for p, w in self.partitions.items()}
        if any(closed.values()):
            self._emit(closed)
        self._commit()

    def _ingest(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
        partition, offset = msg.partition(), msg.offset()
        windows = None if partition is None else self.partitions.get(partition)
        if windows is None or offset is None:
            return  # revoked meanwhile; the new owner replays it
        self.stats.records += 1
        try:
            record = Record.from_json(msg.key(), msg.value())
        except BadRecord as exc:
            self.stats.bad_records += 1
            log.warning("partition %s offset %d: %s", partition, offset, exc)
            windows.skip(offset)
            return
        late_before = windows.late
        windows.add(offset, record)
        self.stats.late_records += windows.late - late_before

    def _emit(self, closed: dict[int, list[ClosedWindow]]) -> None:
        rows: list[dict[str, Any]] = []
        owner: dict[str, tuple[int, WindowKey]] = {}
        for partition, windows in closed.items():
            for window in windows:
                if window.key in self.partitions[partition].emitted:
                    self.stats.duplicates_skipped += 1
                    continue
                tag = f"{window.key[0]}@{window.key[1]}"
                owner[tag] = (partition, window.key)
                rows.extend({**r, "device_id": tag} for r in window.rows)
        if not rows:
            return
        verdicts = verdicts_for_frame(pd.DataFrame(rows), self.policy)
        if self.config.transactional_id:
            self.producer.begin_transaction()
        for tag, verdict, n in zip(
            verdicts["device_id"], verdicts["verdict"], verdicts["n_landmarks"], strict=True
        ):
            partition, (device, start) = owner[tag]
            value = {
                "device_id": device,
                "window_start_ms": start,
                "window_ms": self.config.window_ms,
                "verdict": str(verdict),
                "n_landmarks": int(n),
                "policy": self.policy.text,
                "bound": self.policy.bound.value,
            }
            self.producer.produce(
                self.config.verdicts_topic,
                key=device.encode(),
                value=json.dumps(value, sort_keys=True).encode(),
                partition=partition,
            )
        self.fault("before_flush")
        if self.config.transactional_id:
            self.producer.send_offsets_to_transaction(
                self._offsets(), self.consumer.consumer_group_metadata(), 30
            )
            self.producer.commit_transaction(30)
        elif self.producer.flush(30) > 0:
            raise KafkaException("verdicts not acknowledged within 30 s; nothing committed")
        self.fault("after_flush")
        for partition, key in owner.values():
            self.partitions[partition].mark_emitted(key)
        self.stats.verdicts += len(owner)

    def _offsets(self) -> list[TopicPartition]:
        out = []
        for partition, windows in self.partitions.items():
            offset = windows.safe_offset()
            if offset is not None:
                out.append(TopicPartition(self.config.measurements_topic, partition, offset))
        return out

    def _commit(self) -> None:
        offsets = [tp for tp in self._offsets() if self._committed.get(tp.partition) != tp.offset]
        if offsets and not self.config.transactional_id:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
                self._committed.update({tp.partition: tp.offset for tp in offsets})
            except KafkaException as exc:
                # A rebalance in flight: the next owner replays from the last good commit.
                log.warning("offset commit failed: %s", exc)
