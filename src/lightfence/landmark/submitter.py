"""Delivery of a landmark's records to a verifier: batched, retried, bounded.

A busy landmark issues hundreds of records a second; one HTTP request each would cost the
verifier far more than the records. The submitter sends what accumulated while the previous
request was in flight (up to `max_batch`, after waiting `linger_s` for company) as one
`{"records": [...]}` POST, and keeps the records for a retry with backoff when the verifier
cannot be reached. The backlog is bounded: past `max_backlog` the oldest records are dropped,
counted and logged (their agents still hold them, in their evidence bundles).

A `kafka://HOST:PORT/TOPIC` URL publishes the same records to a Kafka topic instead
(protocol.record_topic), for the verifier's stream workers; a batch counts as delivered once the
broker has acknowledged all of it, and is retried like a failed POST otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from lightfence.backoff import backoff_delay_s
from lightfence.crypto.tls import verifier_tls
from lightfence.evidence.submit import SubmitError, post_json_async
from lightfence.protocol.record_topic import PublishError, RecordPublisher, is_kafka_url

log = logging.getLogger("lightfence.landmark")

MAX_BATCH = 500
"""Records per POST; the verifier's default `max_batch_records`."""
LINGER_S = 0.2
MAX_BACKLOG = 100_000
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
TIMEOUT_S = 10.0
"""Per request to the verifier (connect, and each read)."""


@dataclass
class SubmitCounters:
    records_submitted: int = 0
    batches_submitted: int = 0
    submit_errors: int = 0
    """Failed requests (each retried, unless the verifier refused the batch outright)."""
    records_refused: int = 0
    """Records in batches the verifier refused with a 4xx (bad token, say): not retried."""
    records_dropped: int = 0
    """Records dropped from a full backlog while the verifier was unreachable."""


class Submittable(Protocol):
    """A measurement record, or a GPU round with its evidence (landmark.gpu_server)."""

    def to_json_dict(self) -> dict[str, Any]: ...


class RecordSubmitter:
    """Queue records with `add`; `run` delivers them until stopped. `body_key` names the list in
    each POST: `records` for /records, `gpu_rounds` for /gpu-rounds."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        max_batch: int = MAX_BATCH,
        linger_s: float = LINGER_S,
        max_backlog: int = MAX_BACKLOG,
        body_key: str = "records",
    ) -> None:
        self.url, self.token, self.body_key = url, token, body_key
        self.max_batch, self.linger_s, self.max_backlog = max_batch, linger_s, max_backlog
        self.counters = SubmitCounters()
        self._backlog: deque[Submittable] = deque()
        self._wake = asyncio.Event()
        self._in_flight = 0
        self._publisher = RecordPublisher.from_url(url) if is_kafka_url(url) else None
        # The same trust as every other client of the verifier (crypto.tls): a private CA from
        # $LIGHTFENCE_CA_FILE, no proxies from the environment (the token goes only to `url`).
        # Read now, so a CA file that cannot be loaded stops the landmark at start.
        self._verify = None if self._publisher is not None else verifier_tls()

    @property
    def pending(self) -> int:
        """Records not yet acknowledged by the verifier."""
        return len(self._backlog) + self._in_flight

    def add(self, record: Submittable) -> None:
        self._backlog.append(record)
        if len(self._backlog) > self.max_backlog:
            self._backlog.popleft()
            self.counters.records_dropped += 1
            if self.counters.records_dropped == 1 or self.counters.records_dropped % 1000 == 0:
                log.warning(
                    "verifier backlog full (%d records): %d oldest dropped so far",
                    self.max_backlog,
                    self.counters.records_dropped,
                )
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set and, after it, until the backlog is empty or a request
        fails (the caller bounds that final drain with a timeout)."""
        failures = 0
        async with httpx.AsyncClient(
            timeout=TIMEOUT_S,
            follow_redirects=False,
            trust_env=False,
            verify=True if self._verify is None else self._verify,
        ) as client:
            while True:
                if not self._backlog:
                    if stop.is_set():
                        return
                    self._wake.clear()
                    await _first(self._wake, stop)
                    continue
                if not stop.is_set() and len(self._backlog) < self.max_batch:
                    await asyncio.sleep(self.linger_s)
                if await self._send_batch(client):
                    failures = 0
                    continue
                if stop.is_set():
                    return
                await _first(stop, timeout_s=backoff_delay_s(failures, RETRY_FIRST_S, RETRY_MAX_S))
                failures += 1

    async def _send_batch(self, client: httpx.AsyncClient) -> bool:
        batch = [self._backlog.popleft() for _ in range(min(self.max_batch, len(self._backlog)))]
        self._in_flight = len(batch)
        payload = {self.body_key: [r.to_json_dict() for r in batch]}
        try:
            if self._publisher is not None:
                await asyncio.to_thread(self._publisher.publish, payload[self.body_key])
            else:
                await post_json_async(client, self.url, payload, self.token)
        except PublishError as exc:
            self.counters.submit_errors += 1
            self._backlog.extendleft(reversed(batch))
            log.warning("could not publish records to %s: %s; will retry", self.url, exc)
            return False
        except SubmitError as exc:
            self.counters.submit_errors += 1
            if exc.refused:
                self.counters.records_refused += len(batch)
                log.error(
                    "verifier %s refused %d records (%s); not retried", self.url, len(batch), exc
                )
                return True
            self._backlog.extendleft(reversed(batch))
            log.warning("could not submit records to %s: %s; will retry", self.url, exc)
            return False
        finally:
            self._in_flight = 0
        self.counters.records_submitted += len(batch)
        self.counters.batches_submitted += 1
        return True


async def _first(*events: asyncio.Event, timeout_s: float | None = None) -> None:
    """Return when any of `events` is set, or after `timeout_s`."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
