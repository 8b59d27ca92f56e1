"""Per-device tumbling windows over one input partition: the pure core of the stream workers.

No Kafka here: records go in with their partition offset, closed windows come out, and the
partition offset that is safe to commit is always known. Time is event time (`measured_at_ms`
of the records), never a wall clock, so a replay of the same partition log closes the same
windows with the same rows.

A window [start, start + window_ms) of a device closes when the partition's watermark (the
largest event time seen) passes its end by `lateness_ms`. A record for a window that is already
closed, or already emitted before a restart, is late: it is counted and dropped, never silently
merged into a verdict that was already sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lightfence.fleet.kernel import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

WindowKey = tuple[str, int]
"""(device_id, window start in ms since the epoch)."""


class BadRecord(ValueError):
    """A measurement message that cannot be read; counted and skipped by the worker."""


@dataclass(frozen=True)
class Record:
    device_id: str
    landmark_id: str
    measured_at_ms: int
    row: dict[str, Any]
    """The kernel's columns for this measurement."""

    @classmethod
    def from_json(cls, key: bytes | None, value: bytes | None) -> Record:
        try:
            data = json.loads(value or b"")
            device = str(data["device_id"])
            row = {c: data[c] for c in REQUIRED_COLUMNS if c != "device_id"}
            row.update({c: float(data[c]) for c in OPTIONAL_COLUMNS if c in data})
            for c in ("landmark_lat", "landmark_lon", "min_rtt_ms"):
                row[c] = float(row[c])
            landmark = str(data.get("landmark_id", f"{row['landmark_lat']},{row['landmark_lon']}"))
            at = int(data["measured_at_ms"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRecord(f"unreadable measurement: {exc}") from exc
        if key is not None and key.decode("utf-8", "replace") != device:
            raise BadRecord(f"message key {key!r} is not its device_id {device!r}")
        return cls(device_id=device, landmark_id=landmark, measured_at_ms=at, row=row)


@dataclass
class OpenWindow:
    first_offset: int
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per landmark id, the row with the smallest RTT seen in the window."""


@dataclass(frozen=True)
class ClosedWindow:
    key: WindowKey
    rows: list[dict[str, Any]]


class PartitionWindows:
    """The open windows of one input partition, plus what was already emitted from it."""

    def __init__(self, window_ms: int, lateness_ms: int, emitted: set[WindowKey]) -> None:
        if window_ms <= 0 or lateness_ms < 0:
            raise ValueError("window_ms must be > 0 and lateness_ms >= 0")
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.emitted = emitted
        self.open: dict[WindowKey, OpenWindow] = {}
        # After a restart the old watermark is at least this: no window closes before it.
        self.watermark_ms = max((w + window_ms + lateness_ms for _, w in emitted), default=-1)
        self.next_offset: int | None = None
        self.late = 0

    def window_start(self, at_ms: int) -> int:
        return at_ms - at_ms % self.window_ms

    def add(self, offset: int, record: Record) -> None:
        self.next_offset = offset + 1
        key = (record.device_id, self.window_start(record.measured_at_ms))
        if key in self.emitted or self._is_closed(key[1]):
            self.late += 1
            return
        self.watermark_ms = max(self.watermark_ms, record.measured_at_ms)
        window = self.open.setdefault(key, OpenWindow(first_offset=offset))
        best = window.rows.get(record.landmark_id)
        if best is None or record.row["min_rtt_ms"] < best["min_rtt_ms"]:
            window.rows[record.landmark_id] = {"device_id": record.device_id, **record.row}

    def skip(self, offset: int) -> None:
        """An unreadable record at `offset`: nothing to keep, but it is consumed."""
        self.next_offset = offset + 1

    def _is_closed(self, start_ms: int) -> bool:
        return start_ms + self.window_ms + self.lateness_ms <= self.watermark_ms

    def take_closed(self) -> list[ClosedWindow]:
        """Windows the watermark has passed, removed from the open set, in first-offset order."""
        ready = [k for k in self.open if self._is_closed(k[1])]
        ready.sort(key=lambda k: self.open[k].first_offset)
        return [ClosedWindow(key=k, rows=list(self.open.pop(k).rows.values())) for k in ready]

    def mark_emitted(self, key: WindowKey) -> None:
        self.emitted.add(key)

    def safe_offset(self) -> int | None:
        """The offset to commit: every record before it is in an emitted window (or late)."""
        if self.open:
            return min(w.first_offset for w in self.open.values())
        return self.next_offset
