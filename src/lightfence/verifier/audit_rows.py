"""`audit verify` for the evidence rows: stored records and GPU rounds against the entries that
stored them and the re-verification entries that marked them.

Evidence rows are not among the state digests (verifier.statehash): they are many, and their
content is checked by re-verification (fleet.reverify), which reads each row against its signed
body. What an attacker with SQL could still do to them without touching a body is checked here:
insert a signed row the verifier refused (a stale round, another GPU's), delete one that
refutes, mark an honest one invalid so that it counts for nothing, or clear a mark. Every
stored row is named with its hash by a `record.store` or `gpu_round.store` entry, and every
mark set or cleared by a `*.reverify_failed` or `*.reverify_restored` entry; rows stored before
migration 0010 are checked for what those entries say of them, and as a whole: its baseline
names the highest id and the number of rows of each table then. A row id stored twice means the
first row was deleted and its id reused (a rollback takes a row and its entry together).

Memory: one id and hash per stored row, kept while the chains are walked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lightfence.verifier.models import GpuRoundRow, RecordRow

TABLES: dict[str, type[RecordRow] | type[GpuRoundRow]] = {
    "records": RecordRow,
    "gpu_rounds": GpuRoundRow,
}
_STORE = {"record.store": "records", "gpu_round.store": "gpu_rounds"}
_FAILED = {"record.reverify_failed": "records", "gpu_round.reverify_failed": "gpu_rounds"}
_RESTORED = {"record.reverify_restored": "records", "gpu_round.reverify_restored": "gpu_rounds"}
BASELINE_KEY = "evidence_rows_from"
"""In migration 0010's baseline payload: {table: highest row id then}."""
COUNT_KEY = "evidence_rows_then"
"""In migration 0010's baseline payload: {table: how many rows it had then}."""


class EvidenceRows:
    """What the chains say of each evidence row, gathered entry by entry in write order."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[int, str]] = {t: {} for t in TABLES}
        self.marked: dict[str, set[int]] = {t: set() for t in TABLES}
        self.unnamed_up_to: dict[str, int] = {t: 0 for t in TABLES}
        self.count_then: dict[str, int] = {t: 0 for t in TABLES}
        self.twice: dict[str, list[int]] = {t: [] for t in TABLES}

    def record(self, action: str, payload: str) -> None:
        try:
            self._record(action, payload)
        except (ValueError, TypeError, AttributeError):
            return  # an edited entry: its hash check reports it

    def _record(self, action: str, payload: str) -> None:
        if action in _STORE:
            stored, twice = self.stored[_STORE[action]], self.twice[_STORE[action]]
            for item in _items(payload, "stored"):
                if len(item) == 2:
                    rid = int(item[0])
                    if rid in stored:  # a rollback takes a row and its entry together
                        twice.append(rid)
                    stored[rid] = str(item[1])
        elif action in _FAILED:
            self.marked[_FAILED[action]].update(int(i[0]) for i in _items(payload, "failed"))
        elif action in _RESTORED:
            self.marked[_RESTORED[action]].difference_update(
                int(i[0]) for i in _items(payload, "restored")
            )
        elif action == "state.baseline" and BASELINE_KEY in payload:
            doc = json.loads(payload)
            tops, counts = doc.get(BASELINE_KEY) or {}, doc.get(COUNT_KEY) or {}
            for table in TABLES:  # the latest baseline's (a downgrade and upgrade run 0010 again)
                self.unnamed_up_to[table] = int(tops.get(table, 0))
                self.count_then[table] = int(counts.get(table, 0))

    def check(self, session: Session, max_problems: int) -> list[str]:
        problems: list[str] = []
        for table, model in TABLES.items():
            stored, marked = self.stored[table], self.marked[table]
            floor, then = self.unnamed_up_to[table], self.count_then[table]
            for rid in self.twice[table][:max_problems]:
                problems.append(
                    f"{table} row {rid} was stored twice: the row first stored under this id was "
                    "deleted outside the verifier and its id reused"
                )
            seen: set[int] = set()
            up_to_floor = 0
            rows = select(model.id, model.record_hash, model.invalid_ns).order_by(model.id)
            for rid, digest, invalid_ns in session.execute(rows).yield_per(5000):
                seen.add(rid)
                up_to_floor += 0 < rid <= floor
                named = stored.get(rid)
                if named is None:
                    if rid > floor or rid <= 0:
                        problems.append(
                            f"{table} row {rid} has no audit entry: inserted outside the verifier"
                        )
                elif named != digest:
                    problems.append(
                        f"{table} row {rid} is not the row its audit entry stored (another "
                        "record hash): replaced outside the verifier"
                    )
                if invalid_ns is not None and rid not in marked:
                    problems.append(
                        f"{table} row {rid} is marked invalid, but not by re-verification: "
                        "marked outside the verifier (evidence dropped from verdicts)"
                    )
                elif invalid_ns is None and rid in marked:
                    problems.append(
                        f"{table} row {rid} was excluded by re-verification, but its mark was "
                        "cleared outside the verifier"
                    )
                if len(problems) >= max_problems:
                    return problems
            for rid in sorted(set(stored) - seen)[: max_problems - len(problems)]:
                problems.append(f"{table} row {rid} was stored, then deleted outside the verifier")
            if floor and up_to_floor != then:
                problems.append(
                    f"{table} has {up_to_floor} rows with ids up to {floor}, {then} when migration "
                    "0010 ran: rows inserted or deleted outside the verifier"
                )
        return problems


def _items(payload: str, key: str) -> Iterable[list[Any]]:
    try:
        items = json.loads(payload).get(key) or []
    except (ValueError, AttributeError):
        return []
    return [i for i in items if isinstance(i, list) and i] if isinstance(items, list) else []


def baseline_payload(session: Session) -> dict[str, dict[str, int]]:
    """What migration 0010's baseline says of the rows stored before it: the highest id, and
    how many rows (an insertion into a gap below it, or a deletion, changes the count)."""
    tops, counts = {}, {}
    for table, model in TABLES.items():
        top, n = session.execute(select(func.max(model.id), func.count(model.id))).one()
        tops[table], counts[table] = int(top or 0), int(n)
    return {BASELINE_KEY: tops, COUNT_KEY: counts}
