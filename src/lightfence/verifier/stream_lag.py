"""Consumer lag of the stream workers' group, read from the broker (for GET /stream).

The workers export their own lag and records/s to Prometheus (fleet.stream_metrics); this is the
same lag as the API sees it, for a dashboard that reads only the API: per partition, the group's
committed offset against the partition's end. It needs no worker to be alive (a group whose
workers all died shows its lag growing).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from lightfence.protocol.record_topic import kafka_security_conf, parse_kafka_url

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class StreamSource:
    url: str
    """kafka://HOST:PORT/TOPIC, as the landmarks publish to."""
    group: str = "lightfence-verifier"


class LagUnavailable(RuntimeError):
    """The broker did not answer in time; the message says which step."""


def group_lag(source: StreamSource) -> dict[str, Any]:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    bootstrap, topic = parse_kafka_url(source.url)
    consumer = Consumer(
        {
            **kafka_security_conf(),
            "bootstrap.servers": bootstrap,
            "group.id": source.group,
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
        if meta is None or meta.error is not None:
            raise LagUnavailable(f"topic {topic!r} is unknown to {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        committed = consumer.committed(tps, timeout=TIMEOUT_S)
        partitions = []
        for tp in committed:
            _, end = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
            done = max(tp.offset, 0)  # no commit yet: nothing consumed
            partitions.append(
                {
                    "partition": tp.partition,
                    "committed": done,
                    "end": end,
                    "lag": max(end - done, 0),
                }
            )
    except KafkaException as exc:
        raise LagUnavailable(f"broker {bootstrap}: {exc}") from None
    finally:
        consumer.close()
    return {
        "topic": topic,
        "group": source.group,
        "partitions": partitions,
        "lag_total": sum(p["lag"] for p in partitions),
    }


RATE_WINDOW_S = 60.0
"""records/s is measured over the reads of the last minute; older reads are forgotten."""
MIN_RATE_SPAN_S = 1.0
"""Two reads closer than this give no rate (a quotient of two tiny numbers)."""
MAX_SAMPLES = 256
"""Reads kept per API process, whatever the polling rate."""


class OffsetRate:
    """records/s of the group, from its committed offsets between reads of GET /stream.

    Committed offsets, not the verifier's records table: they count what the group consumed
    (valid, duplicate or rejected alike), which is what lag and back-pressure are about, they are
    read already (no query on a table of millions of rows per dashboard refresh), and they need
    no worker's Prometheus endpoint. The partitions' ends give the rate records arrive at, so
    `records_per_s < produced_per_s` is lag growing. Each API process keeps its own reads: the
    first read has no rate, and a read after a minute without one starts over.
    """

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=MAX_SAMPLES)
        self._key: tuple[str, str, tuple[int, ...]] | None = None

    def update(self, lag: dict[str, Any], now_s: float) -> dict[str, float | None]:
        """Record this read (`group_lag`'s answer) and give the rates since the oldest kept."""
        parts = lag["partitions"]
        key = (lag["topic"], lag["group"], tuple(p["partition"] for p in parts))
        committed = sum(int(p["committed"]) for p in parts)
        end = sum(int(p["end"]) for p in parts)
        if key != self._key:
            self._samples.clear()  # another topic, group or partition count: not comparable
            self._key = key
        while self._samples and now_s - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        if self._samples and (committed < self._samples[-1][1] or end < self._samples[-1][2]):
            self._samples.clear()  # offsets went back: the group was reset or the topic remade
        out: dict[str, float | None] = {
            "records_per_s": None,
            "produced_per_s": None,
            "rate_span_s": None,
        }
        if self._samples:
            t0, committed0, end0 = self._samples[0]
            span = now_s - t0
            if span >= MIN_RATE_SPAN_S:
                out = {
                    "records_per_s": (committed - committed0) / span,
                    "produced_per_s": (end - end0) / span,
                    "rate_span_s": span,
                }
        self._samples.append((now_s, committed, end))
        return out
