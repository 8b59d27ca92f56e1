"""`audit verify`: walk every audit chain (verifier.audit) and the state tables against them.

Each chain is checked on its own (sequence, links, hashes, head). The state digests are then
merged across chains in the order the writes happened: a main entry m comes after every stream
entry that saw main head m-1 or less, and a stream entry that saw main head m comes after main
entry m (stream writers hold the writers' lock shared, main writers exclusive). Stream entries
of different chains that saw the same main head record only verdicts they inserted, distinct
rows, so their order among themselves does not matter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from lightfence.model.text import one_line
from lightfence.verifier.audit import (
    CHAIN_OPEN_ACTION,
    GENESIS_HASH,
    MAIN_CHAIN,
    STATE_KEY,
    entry_hash,
    on_postgresql,
    stream_entry_hash,
)
from lightfence.verifier.audit_rows import EvidenceRows
from lightfence.verifier.models import AuditHeadRow, AuditRow, AuditStreamRow

BATCH_ROWS = 5000
MAX_NAME_CHARS = 300

Order = tuple[int, int, int, int]
"""Where an entry's state falls among all chains: (main seq, 0 main / 1 stream, chain, seq)."""
Ref = tuple[str, str, str | None]
"""A state ref: table, row key, digest (None: the row was deleted)."""


def _state_refs(payload: str) -> list[Ref]:
    """The state refs an entry's payload records (none from an edited, malformed one: its hash
    check reports it)."""
    if f'"{STATE_KEY}":' not in payload:
        return []
    try:
        refs = json.loads(payload).get(STATE_KEY) or []
    except (ValueError, AttributeError):
        return []
    if not isinstance(refs, list):
        return []
    return [
        (str(r[0]), str(r[1]), None if r[2] is None else str(r[2]))
        for r in refs
        if isinstance(r, list) and len(r) == 3
    ]


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head_hash: str
    """The main chain's head."""
    problems: list[str]
    chains: int = 1
    """Chains walked: the main chain and the stream chains."""

    @property
    def ok(self) -> bool:
        return not self.problems


class _State:
    """The latest digest each covered row was recorded with, across chains."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], tuple[Order, str | None]] = {}
        self.evidence = EvidenceRows()

    def record(self, refs: list[Ref], order: Order) -> None:
        for table, key, digest in refs:
            known = self.latest.get((table, key))
            if known is None or known[0] < order:
                self.latest[(table, key)] = (order, digest)

    def recorded(self) -> dict[tuple[str, str], str | None]:
        return {k: digest for k, (_, digest) in self.latest.items()}


def verify_chain(session: Session, *, max_problems: int = 20, state: bool = True) -> AuditReport:
    """Walk every chain; report every edited, deleted or reordered entry found, then (with
    `state`) every registry or verdict row that differs from what the chains last recorded,
    and every stored record or GPU round inserted, replaced, deleted, marked or unmarked
    outside the verifier (verifier.audit_rows)."""
    _snapshot(session)
    problems: list[str] = []
    count, main_hash, chains, states = _walk(session, problems, max_problems)
    if state and len(problems) < max_problems:
        from lightfence.verifier.statehash import check_state

        problems.extend(check_state(session, states.recorded(), max_problems - len(problems)))
    if state and len(problems) < max_problems:
        problems.extend(states.evidence.check(session, max_problems - len(problems)))
    return AuditReport(count, main_hash, problems[:max_problems], chains)


def recorded_digests(session: Session) -> dict[tuple[str, str], str | None]:
    """The digest the chains last recorded for each covered row (a migration that changes the
    column lists checks the rows against these before recording them afresh)."""
    return _walk(session, [], 0)[3].recorded()


def _walk(session: Session, problems: list[str], max_problems: int) -> tuple[int, str, int, _State]:
    """Every chain walked: (entries, main head hash, chains, state recorded)."""
    states = _State()
    heads = {h.id: h for h in session.execute(select(AuditHeadRow)).scalars()}
    opened: dict[int, str] = {}
    count, main_hash, main_last = _walk_main(session, heads, problems, states, opened)
    stream_ids = sorted(
        (set(heads) - {MAIN_CHAIN})
        | set(opened)
        | set(session.execute(select(AuditStreamRow.chain).distinct()).scalars())
    )
    for chain in stream_ids:
        if max_problems and len(problems) >= max_problems:
            break
        count += _walk_stream(session, chain, heads, opened, main_last, problems, states)
    return count, main_hash, 1 + len(stream_ids), states


def _snapshot(session: Session) -> None:
    """On PostgreSQL, read everything from one snapshot: writers on stream chains do not pause
    for a reader, and heads, chains and state tables read at different moments would disagree
    (SQLite's read transaction is a snapshot already). Only possible before the session's
    transaction has begun; a caller that read before keeps its own isolation."""
    if on_postgresql(session) and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def _walk_main(
    session: Session,
    heads: dict[int, AuditHeadRow],
    problems: list[str],
    states: _State,
    opened: dict[int, str],
) -> tuple[int, str, int]:
    prev, expected_seq, count, last_seq = GENESIS_HASH, 1, 0, 0
    for row in _rows(session, None):
        count += 1
        if row.seq != expected_seq:
            problems.append(f"entries {expected_seq}..{row.seq - 1} are missing (deleted)")
        if row.prev_hash != prev:
            problems.append(f"entry {row.seq}: prev_hash does not match entry before it")
        digest = entry_hash(
            row.prev_hash, row.seq, row.at_ns, row.actor, row.action, row.subject, row.payload
        )
        if digest != row.hash:
            problems.append(f"entry {row.seq} ({row.action} {row.subject}) was edited")
        elif row.action == CHAIN_OPEN_ACTION:
            for chain, name in _opened(row.payload).items():
                if chain in opened:
                    # Ids are never reused: an earlier chain with it was deleted, and the next
                    # one opened took its id.
                    problems.append(
                        f"entry {row.seq} opens stream chain {chain} ({name}), opened before as "
                        f"{opened[chain]}: the earlier chain was deleted"
                    )
                opened[chain] = name
        states.record(_state_refs(row.payload), (row.seq, 0, 0, 0))
        states.evidence.record(row.action, row.payload)
        prev, expected_seq, last_seq = row.hash, row.seq + 1, row.seq
    head = heads.get(MAIN_CHAIN)
    if head is None:
        if count:
            problems.append("audit_head is missing")
    elif head.seq != last_seq or head.hash != prev:
        problems.append(
            f"audit head says entry {head.seq} is last but the log ends at entry {last_seq}: "
            "newest entries were deleted or the head was altered"
        )
    return count, prev, last_seq


def _walk_stream(
    session: Session,
    chain: int,
    heads: dict[int, AuditHeadRow],
    opened: dict[int, str],
    main_last: int,
    problems: list[str],
    states: _State,
) -> int:
    head = heads.get(chain)
    # Names go into problem lines (the dashboard shows them): bounded, whatever an edited
    # head row holds (SQLite does not enforce the column's length).
    named = head.name if head is not None else None
    name = opened.get(chain) or one_line(named or "?", MAX_NAME_CHARS)
    where = f"stream chain {chain} ({name})"
    if chain not in opened:
        problems.append(f"{where} was never opened on the main chain: written outside the verifier")
    elif head is not None and head.name != opened[chain]:
        problems.append(
            f"{where}: its head is named {one_line(head.name or '', MAX_NAME_CHARS)!r}, "
            "not as opened"
        )
    prev, expected_seq, count, last_seq, last_main = GENESIS_HASH, 1, 0, 0, 0
    for row in _rows(session, chain):
        count += 1
        if row.seq != expected_seq:
            problems.append(f"{where}: entries {expected_seq}..{row.seq - 1} are missing")
        if row.prev_hash != prev:
            problems.append(f"{where}: entry {row.seq}'s prev_hash does not match the entry before")
        digest = stream_entry_hash(
            row.prev_hash, chain, row.seq, row.main_seq, row.at_ns, row.actor, row.action,
            row.subject, row.payload,
        )  # fmt: skip
        if digest != row.hash:
            problems.append(f"{where}: entry {row.seq} ({row.action} {row.subject}) was edited")
        if not last_main <= row.main_seq <= main_last:
            problems.append(
                f"{where}: entry {row.seq} says main entry {row.main_seq} was the head, out of "
                f"order (the main chain ends at {main_last})"
            )
        refs = _state_refs(row.payload)
        for table, key, recorded in refs:
            # The writer refuses these (audit.append): only an entry forged with SQL has one,
            # recording a row as the attacker left it. A stream entry records the verdicts it
            # inserts, each once.
            if table != "verdicts" or recorded is None:
                problems.append(
                    f"{where}: entry {row.seq} records {table} row {key}, which only the main "
                    "chain may: it was not written by the verifier"
                )
            elif (table, key) in states.latest:
                problems.append(
                    f"{where}: entry {row.seq} records verdicts row {key}, which an earlier "
                    "entry recorded: a stream entry records only the verdicts it inserts"
                )
        states.record(refs, (row.main_seq, 1, chain, row.seq))
        states.evidence.record(row.action, row.payload)
        prev, expected_seq, last_seq, last_main = row.hash, row.seq + 1, row.seq, row.main_seq
    if head is None:
        if chain in opened:
            problems.append(f"{where}: its head was deleted")
    elif head.seq != last_seq or head.hash != prev:
        problems.append(
            f"{where}: its head says entry {head.seq} is last but the chain ends at entry "
            f"{last_seq}: newest entries were deleted or the head was altered"
        )
    return count


def _rows(session: Session, chain: int | None) -> Iterator[Any]:
    """The main chain's entries (chain None) or a stream chain's, in order, a batch at a time."""
    last = 0
    while True:
        query: Select[Any]
        if chain is None:
            query = select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq)
        else:
            query = (
                select(AuditStreamRow)
                .where(AuditStreamRow.chain == chain, AuditStreamRow.seq > last)
                .order_by(AuditStreamRow.seq)
            )
        rows = session.execute(query.limit(BATCH_ROWS)).scalars().all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _opened(payload: str) -> dict[int, str]:
    try:
        chains = json.loads(payload).get("chains") or []
        # Names go into problem lines: bounded, whatever an edited payload holds.
        return {int(c): one_line(str(n), MAX_NAME_CHARS) for c, n in chains}
    except (ValueError, TypeError, AttributeError):
        return {}
