"""Prometheus metrics of a signed-record stream worker: throughput, lag, batch time.

Registered on the worker's Service registry, so one /metrics page shows the verifier's own
counters (records stored, rejected by reason, verdicts, alerts) beside these.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RATE_WINDOW_S = 10.0
"""records/s is the count over about this many seconds: long enough to smooth batches."""


class StreamMetrics:
    @classmethod
    def on(cls, registry: CollectorRegistry) -> StreamMetrics:
        """The stream metrics of `registry`, registered once (a registry refuses a second)."""
        got = _BY_REGISTRY.get(registry)
        if got is None:
            got = _BY_REGISTRY[registry] = cls(registry)
        return got

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "lightfence_stream_messages_total",
            "Messages consumed from the records topic (valid or not)",
            registry=registry,
        )
        self.bad_messages = Counter(
            "lightfence_stream_bad_messages_total",
            "Messages that are not a record's JSON form (counted, logged, skipped)",
            registry=registry,
        )
        self.records_per_s = Gauge(
            "lightfence_stream_records_per_second",
            f"Messages consumed per second over the last ~{RATE_WINDOW_S:.0f} s",
            registry=registry,
        )
        self.lag = Gauge(
            "lightfence_stream_consumer_lag",
            "Messages in an owned partition not yet consumed (high watermark - position)",
            ["partition"],
            registry=registry,
        )
        self.lag_total = Gauge(
            "lightfence_stream_consumer_lag_total",
            "Sum of the lag over this worker's partitions",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "lightfence_stream_batch_seconds",
            "Time to check, store and commit one consumed batch",
            registry=registry,
        )
        self._recent: deque[tuple[float, int]] = deque()

    def consumed(self, n: int, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        self.messages.inc(n)
        self._recent.append((now_s, n))
        while self._recent and now_s - self._recent[0][0] > RATE_WINDOW_S:
            self._recent.popleft()
        span = max(now_s - self._recent[0][0], 1.0)
        self.records_per_s.set(sum(k for _, k in self._recent) / span)

    def set_lag(self, lags: dict[int, int]) -> None:
        for partition, lag in lags.items():
            self.lag.labels(str(partition)).set(lag)
        self.lag_total.set(sum(lags.values()))

    def forget(self, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self.lag.remove(str(partition))


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, StreamMetrics] = (
    weakref.WeakKeyDictionary()
)
