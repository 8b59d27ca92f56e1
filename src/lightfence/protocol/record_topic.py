"""Signed measurement records on a Kafka topic: the message format and a publisher.

One message per record: key = the device id (so one device's records stay in one partition, in
order, with one consumer), value = the record's JSON form exactly as POST /records takes one
record (`MeasurementRecord.to_json_dict`). Nothing is added or trusted beyond the record itself:
the stream workers (fleet.signed_stream) check its signatures, freshness, registry and replay
with the verifier's own ingestion code.

Addresses are `kafka://HOST:PORT[,HOST:PORT...]/TOPIC`, so a landmark's `verifier_url` can name a
topic instead of an HTTP verifier.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

KAFKA_SCHEME = "kafka"
FLUSH_TIMEOUT_S = 30.0


class TopicAddressError(ValueError):
    """A `kafka://` address without brokers or topic."""


class PublishError(RuntimeError):
    """The broker did not acknowledge every record; the caller keeps them for a retry."""


def is_kafka_url(url: str) -> bool:
    return url.startswith(f"{KAFKA_SCHEME}://")


def parse_kafka_url(url: str) -> tuple[str, str]:
    """(bootstrap servers, topic) of `kafka://HOST:PORT[,HOST:PORT]/TOPIC`."""
    parts = urlsplit(url)
    topic = parts.path.strip("/")
    if parts.scheme != KAFKA_SCHEME or not parts.netloc or not topic or "/" in topic:
        raise TopicAddressError(
            f"cannot use {url!r} as a record topic; write kafka://HOST:PORT[,HOST:PORT]/TOPIC"
        )
    return parts.netloc, topic


def encode(record_json: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of one record's message."""
    device_id = record_json.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise ValueError("a record without a device_id cannot be keyed")
    return device_id.encode(), json.dumps(record_json, separators=(",", ":")).encode()


class RecordPublisher:
    """An idempotent, acks=all producer of record messages. `publish` returns only once the
    broker has every record of the batch, else raises PublishError."""

    def __init__(
        self, bootstrap_servers: str, topic: str, *, timeout_s: float = FLUSH_TIMEOUT_S
    ) -> None:
        self.topic, self.timeout_s = topic, timeout_s
        self._conf = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(timeout_s * 1000),
        }
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer  # the landmark imports this module; load on use

        return Producer(self._conf)

    @classmethod
    def from_url(cls, url: str) -> RecordPublisher:
        return cls(*parse_kafka_url(url))

    def publish(self, records: Sequence[Mapping[str, Any]]) -> None:
        failed: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        for record_json in records:
            key, value = encode(record_json)
            while True:
                try:
                    self._producer.produce(self.topic, value=value, key=key, on_delivery=done)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.1)
        left = self._producer.flush(self.timeout_s)
        if left or failed:
            why = failed[0] if failed else f"{left} not acknowledged in {self.timeout_s:.0f} s"
            # A broker that lost its state (restarted empty) no longer knows this idempotent
            # producer's id and sequence; librdkafka then never delivers. A new producer does;
            # the caller retries the whole batch (a duplicate is acknowledged, not stored).
            self._producer.purge()
            self._producer.flush(0)
            self._producer = self._new_producer()
            raise PublishError(f"{len(failed) + left} of {len(records)} records: {why}")

    def close(self) -> None:
        self._producer.flush(self.timeout_s)
