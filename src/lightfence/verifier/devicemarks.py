"""Devices a write transaction stored records of, marked for a verdict in one statement.

Each stored record bumps its device's `dirty_seq` (so a verdict computed meanwhile is not
stored as current), sets `needs_verdict` and advances `last_record_ns`. Done through ORM objects
that was one tracked object and one UPDATE per device; a batch of 2,000 records touches up to
2,000 devices. Here the batch's marks are summed per device and written at once: on PostgreSQL
one `UPDATE ... FROM unnest(arrays)`, elsewhere one executemany. The columns are bookkeeping,
not covered by the audit chain's state digests (verifier.statehash), as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Table, bindparam, case, func, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from lightfence.verifier.models import DeviceRow
from lightfence.verifier.sqlin import text_array

_PG_MARK = text(
    "UPDATE devices SET needs_verdict = true, dirty_seq = devices.dirty_seq + v.n, "
    "last_record_ns = GREATEST(COALESCE(devices.last_record_ns, 0), v.m) "
    "FROM unnest(CAST(:ids AS text[]), CAST(:ns AS bigint[]), CAST(:ms AS bigint[])) "
    "AS v(id, n, m) WHERE devices.id = v.id"
)


@dataclass
class DeviceMarks:
    counts: dict[str, int] = field(default_factory=dict)
    """Records stored per device in this transaction (dirty_seq goes up by as many)."""
    newest_ns: dict[str, int] = field(default_factory=dict)
    """The latest measurement time among them."""

    def add(self, device_id: str, measured_ns: int) -> None:
        self.counts[device_id] = self.counts.get(device_id, 0) + 1
        self.newest_ns[device_id] = max(self.newest_ns.get(device_id, 0), measured_ns)

    def write(self, session: Session) -> None:
        """Apply the marks in `session`'s transaction, then forget them."""
        if not self.counts:
            return
        ids = sorted(self.counts)
        counts = [self.counts[d] for d in ids]
        newest = [self.newest_ns[d] for d in ids]
        if session.get_bind().dialect.name == "postgresql":
            ints = ",".join  # integer array literals: nothing in them to quote
            session.execute(
                _PG_MARK,
                {
                    "ids": text_array(ids) or "{}",
                    "ns": "{" + ints(map(str, counts)) + "}",
                    "ms": "{" + ints(map(str, newest)) + "}",
                },
            )
        else:
            table = DeviceRow.__table__
            assert isinstance(table, Table)
            last = func.coalesce(table.c.last_record_ns, 0)
            m: BindParameter[int] = bindparam("m")
            stmt = (
                update(table)
                .where(table.c.id == bindparam("d"))
                .values(
                    needs_verdict=True,
                    dirty_seq=table.c.dirty_seq + bindparam("n"),
                    last_record_ns=case((last > m, last), else_=m),
                )
            )
            rows = [{"d": d, "n": n, "m": t} for d, n, t in zip(ids, counts, newest, strict=True)]
            session.execute(stmt, rows)
        self.counts, self.newest_ns = {}, {}
