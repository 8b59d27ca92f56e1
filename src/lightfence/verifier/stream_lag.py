"""Consumer lag of the stream workers' group, read from the broker (for GET /stream).

The workers export their own lag and records/s to Prometheus (fleet.stream_metrics); this is the
same lag as the API sees it, for a dashboard that reads only the API: per partition, the group's
committed offset against the partition's end. It needs no worker to be alive (a group whose
workers all died shows its lag growing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightfence.protocol.record_topic import parse_kafka_url

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
        {"bootstrap.servers": bootstrap, "group.id": source.group, "enable.auto.commit": False}
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
