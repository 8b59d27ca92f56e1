"""The service's one clock read. Logic below the API takes `now_ns` as an argument."""

from __future__ import annotations

import time


def now_ns() -> int:
    return time.time_ns()


def iso(ns: int | None) -> str | None:
    """UTC ISO 8601 text of a Unix-nanosecond time, for API answers and CSV."""
    if ns is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")
