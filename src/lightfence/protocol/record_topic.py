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
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KAFKA_SCHEME = "kafka"
FLUSH_TIMEOUT_S = 30.0
KAFKA_CONFIG_ENV = "LIGHTFENCE_KAFKA_CONFIG"
"""A client.properties-style file (`key=value` lines) of librdkafka security settings that every
lightfence Kafka client (publisher, stream workers, the API's lag reader) adds to its own."""
KAFKA_SECURITY_PREFIXES = ("security.", "sasl.", "ssl.")
"""Only authentication and TLS may come from that file: what makes delivery exactly-once and
ordered (idempotence, acks, commits) is lightfence's to set, never an operator's typo."""
MAX_KAFKA_CONFIG_BYTES = 64 * 1024


class TopicAddressError(ValueError):
    """A `kafka://` address without brokers or topic."""


class PublishError(RuntimeError):
    """The broker did not acknowledge every record; the caller keeps them for a retry."""


class KafkaConfigError(ValueError):
    """The security settings file cannot be used; the message names the file and the line."""


def kafka_security_conf(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The security settings from $LIGHTFENCE_KAFKA_CONFIG (empty when it is unset).

    Without them anyone who reaches the broker may publish; with `security.protocol=SASL_SSL`
    and the broker's ACLs, only the landmarks' principals may write the record topic (records
    are still each checked on their own signatures)."""
    env = os.environ if environ is None else environ
    name = env.get(KAFKA_CONFIG_ENV)
    if not name:
        return {}
    path = Path(name).expanduser()
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_KAFKA_CONFIG_BYTES + 1)
    except OSError as exc:
        raise KafkaConfigError(
            f"${KAFKA_CONFIG_ENV}: cannot read {path}: {exc.strerror or exc}"
        ) from None
    if len(raw) > MAX_KAFKA_CONFIG_BYTES:
        raise KafkaConfigError(f"${KAFKA_CONFIG_ENV}: {path} is too large for a settings file")
    conf: dict[str, str] = {}
    for n, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith(("#", "!")):
            continue
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise KafkaConfigError(f"{path}:{n}: write key=value (e.g. security.protocol=SASL_SSL)")
        if not key.startswith(KAFKA_SECURITY_PREFIXES):
            raise KafkaConfigError(
                f"{path}:{n}: {key!r} is not a security setting; only "
                f"{', '.join(p + '*' for p in KAFKA_SECURITY_PREFIXES)} may be set here"
            )
        conf[key] = value.strip()
    return conf


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
            **kafka_security_conf(),
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
