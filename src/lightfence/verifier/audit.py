"""The append-only, hash-chained audit log. Every write in the verifier appends here.

Entry n stores `hash = SHA-256(prev_hash || canonical(seq, at_ns, actor, action, subject,
payload))`, with prev_hash the hash of entry n-1 (64 zeros for the first). Editing any field of a
row changes its hash; deleting a row breaks the sequence or the next row's prev_hash; dropping the
newest rows is caught against `audit_head`; rewinding both, or re-hashing the whole chain, is
caught against the signed checkpoints the verifier exports outside the database
(verifier.checkpoint, `lightfence audit verify --checkpoint FILE`).

Entries may carry `state`: digests of the registry and verdict rows the write left behind
(verifier.statehash). Verification compares every such row with its last recorded digest, so
a row edited with SQL is caught too.

Writers lock the single `audit_head` row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's write
transactions are already serial), so the chain stays linear under concurrent requests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lightfence.verifier.models import AuditHeadRow, AuditRow

GENESIS_HASH = "0" * 64
STATE_KEY = "state"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(
    prev_hash: str, seq: int, at_ns: int, actor: str, action: str, subject: str, payload: str
) -> str:
    body = canonical_json([seq, at_ns, actor, action, subject, payload])
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


def lock_head(session: Session) -> AuditHeadRow:
    """Take the chain's lock for this transaction (every write transaction starts here)."""
    held = session.info.get(_HEAD_KEY)
    if isinstance(held, AuditHeadRow):
        return held
    head = session.execute(
        select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:  # the migration creates it; this only covers a hand-emptied table
        head = AuditHeadRow(id=1, seq=0, hash=GENESIS_HASH)
        session.add(head)
        session.flush()
    session.info[_HEAD_KEY] = head
    return head


_HEAD_KEY = "audit_head"


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    payload: dict[str, Any],
    now_ns: int,
    state: list[list[str | None]] | None = None,
) -> AuditRow:
    """Append one entry in the caller's transaction (it commits or rolls back with the write).

    `state`: [table, row key, digest] of covered rows this write left (statehash)."""
    head = lock_head(session)
    if state:
        payload = {**payload, STATE_KEY: state}
    text = canonical_json(payload)
    seq = head.seq + 1
    digest = entry_hash(head.hash, seq, now_ns, actor, action, subject, text)
    row = AuditRow(
        seq=seq,
        at_ns=now_ns,
        actor=actor,
        action=action,
        subject=subject,
        payload=text,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(row)
    head.seq = seq
    head.hash = digest
    return row


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head_hash: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


BATCH_ROWS = 5000


def verify_chain(session: Session, *, max_problems: int = 20, state: bool = True) -> AuditReport:
    """Walk the whole chain; report every edited, deleted or reordered row found, then (with
    `state`) every registry or verdict row that differs from what the chain last recorded."""
    problems: list[str] = []
    recorded: dict[tuple[str, str], str | None] = {}
    prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    last_seq = 0
    while True:
        rows = (
            session.execute(
                select(AuditRow)
                .where(AuditRow.seq > last_seq)
                .order_by(AuditRow.seq)
                .limit(BATCH_ROWS)
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for row in rows:
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
            if state and f'"{STATE_KEY}":' in row.payload:
                _collect_state(row.payload, recorded)
            prev = row.hash
            expected_seq = row.seq + 1
            last_seq = row.seq
        if len(problems) >= max_problems:
            break
    head = session.get(AuditHeadRow, 1)
    if head is None:
        if count:
            problems.append("audit_head is missing")
    elif head.seq != last_seq or head.hash != prev:
        problems.append(
            f"audit head says entry {head.seq} is last but the log ends at entry {last_seq}: "
            "newest entries were deleted or the head was altered"
        )
    if state and len(problems) < max_problems:
        from lightfence.verifier.statehash import check_state

        problems.extend(check_state(session, recorded, max_problems - len(problems)))
    return AuditReport(entries=count, head_hash=prev, problems=problems[:max_problems])


def _collect_state(payload: str, recorded: dict[tuple[str, str], str | None]) -> None:
    try:
        refs = json.loads(payload).get(STATE_KEY) or []
    except (ValueError, AttributeError):
        return  # an edited entry; its hash check reports it
    for ref in refs:
        if isinstance(ref, list) and len(ref) == 3:
            recorded[(str(ref[0]), str(ref[1]))] = None if ref[2] is None else str(ref[2])
