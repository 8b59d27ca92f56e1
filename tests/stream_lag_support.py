"""A topic with a known consumer lag on the shared test broker, for GET /stream's tests.

Records are produced to chosen partitions and the group's offsets committed directly, with a
plain consumer of that group: the broker then holds exactly the state a stream worker leaves
(GET /stream reads only the broker), without a worker, PostgreSQL or signed records.
"""

from __future__ import annotations

import os
import uuid

import pytest

KAFKA_ENV = "LIGHTFENCE_KAFKA_BOOTSTRAP"


def shared_bootstrap() -> str:
    given = os.environ.get(KAFKA_ENV)
    if not given:
        pytest.skip(f"!!! {KAFKA_ENV} is not set: scripts/start-kafka.sh starts the test broker")
    return given


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(15)


def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    """`per_partition[p]` small messages to partition p, all acknowledged.

    One message per produce request: Tansu answers a partition's high watermark as the last
    batch's base offset + 1 (docs/fleet.md: lag reads low by up to one producer batch), and the
    tests compare exact numbers."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for partition, n in per_partition.items():
        for i in range(n):
            producer.produce(topic, value=f"m{i}".encode(), partition=partition)
            assert producer.flush(15) == 0, "the broker did not acknowledge a message"


def commit(bootstrap: str, topic: str, group: str, offsets: dict[int, int]) -> None:
    """Commit `offsets[p]` for the group, as a worker does after a batch."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        tps = [TopicPartition(topic, p, off) for p, off in offsets.items()]
        consumer.commit(offsets=tps, asynchronous=False)
    finally:
        consumer.close()
