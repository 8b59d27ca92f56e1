"""`audit verify` for the evidence rows: stored records and GPU rounds against the entries that
stored them and the re-verification entries that marked them.

Evidence rows are not among the state digests (verifier.statehash): they are many, and their
content is checked by re-verification (fleet.reverify), which reads each row against its signed
body. What an attacker with SQL could still do to them without touching a body is checked here:
insert a signed row the verifier refused (a stale round, another GPU's), delete one that
refutes, mark an honest one invalid so that it counts for nothing, or clear a mark. Every
stored row is named with its hash by a `record.store` or `gpu_round.store` entry, and every
mark set or cleared by a `*.reverify_failed` or `*.reverify_restored` entry; rows stored before
migration 0010 (whose baseline names the highest id of each table then) are checked only for
what those entries say of them.

Memory: one id and hash per stored row, kept while the chains are walked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
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


class EvidenceRows:
    """What the chains say of each evidence row, gathered entry by entry in write order."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[int, str]] = {t: {} for t in TABLES}
        self.marked: dict[str, set[int]] = {t: set() for t in TABLES}
        self.unnamed_up_to: dict[str, int] = {t: 0 for t in TABLES}

    def record(self, action: str, payload: str) -> None:
        try:
            self._record(action, payload)
        except (ValueError, TypeError, AttributeError):
            return  # an edited entry: its hash check reports it

    def _record(self, action: str, payload: str) -> None:
        if action in _STORE:
            for item in _items(payload, "stored"):
                if len(item) == 2:
                    self.stored[_STORE[action]][int(item[0])] = str(item[1])
        elif action in _FAILED:
            self.marked[_FAILED[action]].update(int(i[0]) for i in _items(payload, "failed"))
        elif action in _RESTORED:
            self.marked[_RESTORED[action]].difference_update(
                int(i[0]) for i in _items(payload, "restored")
            )
        elif action == "state.baseline" and BASELINE_KEY in payload:
            for table, top in (json.loads(payload).get(BASELINE_KEY) or {}).items():
                if table in self.unnamed_up_to:
                    self.unnamed_up_to[table] = max(self.unnamed_up_to[table], int(top))

    def check(self, session: Session, max_problems: int) -> list[str]:
        problems: list[str] = []
        for table, model in TABLES.items():
            stored, marked = self.stored[table], self.marked[table]
            seen: set[int] = set()
            rows = select(model.id, model.record_hash, model.invalid_ns).order_by(model.id)
            for rid, digest, invalid_ns in session.execute(rows).yield_per(5000):
                seen.add(rid)
                named = stored.get(rid)
                if named is None:
                    if rid > self.unnamed_up_to[table]:
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
        return problems


def _items(payload: str, key: str) -> Iterable[list[Any]]:
    try:
        items = json.loads(payload).get(key) or []
    except (ValueError, AttributeError):
        return []
    return [i for i in items if isinstance(i, list) and i] if isinstance(items, list) else []


def baseline_payload(session: Session) -> dict[str, dict[str, int]]:
    """What migration 0010's baseline says of the rows stored before it: the highest id."""
    tops = {}
    for table, model in TABLES.items():
        top = session.execute(select(model.id).order_by(model.id.desc()).limit(1)).scalar()
        tops[table] = int(top or 0)
    return {BASELINE_KEY: tops}
