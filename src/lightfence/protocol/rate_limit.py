"""Per-source token buckets with a bound on how many sources are remembered."""

from __future__ import annotations

from collections import OrderedDict


class SourceRateLimiter:
    """Allow `rate_per_s` events per source (burst `burst`); pure, time passed in.

    At most `max_sources` sources are tracked; the least recently seen is forgotten first, so
    a flood from many addresses cannot grow memory (a forgotten source starts with a full
    bucket again, which only ever errs towards serving).
    """

    def __init__(self, rate_per_s: float, burst: int, max_sources: int) -> None:
        self.rate_per_ns = rate_per_s / 1e9
        self.burst = float(burst)
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: str, now_ns: int) -> bool:
        tokens, last = self._buckets.pop(source, (self.burst, now_ns))
        tokens = min(self.burst, tokens + max(0, now_ns - last) * self.rate_per_ns)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now_ns)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed
