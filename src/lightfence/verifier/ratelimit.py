"""Per-token write budgets: token buckets, one per API token and budget, in this process.

A bucket holds up to `burst` units and refills at `rate_per_s`. A write that costs more than is
left is refused with the wait until it would fit (HTTP 429 with Retry-After); nothing is spent
for a refused write. A quota spent after the fact (`charge`) may leave a bucket in debt: the
token's next writes are refused until it refills. Buckets live in memory, so each verifier
process (and each restart) keeps its own; they bound what one token can do per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    name: str
    """What is counted, for messages: `write requests`, `records`, `rejected records`."""
    rate_per_s: float
    """Refill rate; 0 turns this budget off."""
    burst: float

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0


class Buckets:
    def __init__(self, budget: Budget, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget, self.clock = budget, clock
        self._level: dict[str, tuple[float, float]] = {}  # key -> (units, at)
        self._lock = threading.Lock()

    def _now_level(self, key: str, now: float) -> float:
        units, at = self._level.get(key, (self.budget.burst, now))
        return min(self.budget.burst, units + (now - at) * self.budget.rate_per_s)

    def debt_s(self, key: str) -> float:
        """Seconds until the bucket is out of debt; 0 when it is not in debt."""
        if not self.budget.enabled:
            return 0.0
        with self._lock:
            level = self._now_level(key, self.clock())
        return max(0.0, -level / self.budget.rate_per_s)

    def take(self, key: str, cost: float) -> float:
        """Spend `cost` units if they are there (returns 0), else spend nothing and return the
        seconds until they would be. A cost above `burst` never fits: the caller caps it."""
        if not self.budget.enabled:
            return 0.0
        with self._lock:
            now = self.clock()
            level = self._now_level(key, now)
            if level >= cost:
                self._level[key] = (level - cost, now)
                return 0.0
            return (cost - level) / self.budget.rate_per_s

    def charge(self, key: str, cost: float) -> None:
        """Spend `cost` units even into debt (a quota counted after the work was done)."""
        if not self.budget.enabled or cost <= 0:
            return
        with self._lock:
            now = self.clock()
            self._level[key] = (self._now_level(key, now) - cost, now)


class WriteLimits:
    """The three budgets of every token: write requests, records, rejected records."""

    def __init__(
        self,
        requests: Budget,
        records: Budget,
        rejections: Budget,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests = Buckets(requests, clock)
        self.records = Buckets(records, clock)
        self.rejections = Buckets(rejections, clock)

    def admit_write(self, key: str) -> tuple[str, float] | None:
        """None if the token may write now, else (why, seconds to wait)."""
        wait = self.rejections.debt_s(key)
        if wait > 0:
            return (
                f"this token's records were rejected faster than its quota of "
                f"{self.rejections.budget.rate_per_s:g}/s allows; fix the submitter",
                wait,
            )
        wait = self.requests.take(key, 1)
        if wait > 0:
            return f"over {self.requests.budget.rate_per_s:g} write requests/s", wait
        return None

    def admit_records(self, key: str, n: int) -> tuple[str, float] | None:
        wait = self.records.take(key, min(n, self.records.budget.burst))
        if wait > 0:
            return f"over {self.records.budget.rate_per_s:g} records/s", wait
        return None
