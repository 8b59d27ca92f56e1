"""The append-only, hash-chained audit log. Every write in the verifier appends here.

Entry n stores `hash = SHA-256(prev_hash || canonical(seq, at_ns, actor, action, subject,
payload))`, with prev_hash the hash of entry n-1 (64 zeros for the first). Editing any field of a
row changes its hash; deleting a row breaks the sequence or the next row's prev_hash; dropping the
newest rows is caught against `audit_head`; rewinding both, or re-hashing the whole chain, is
caught against the signed checkpoints the verifier exports outside the database
(verifier.checkpoint, `lightfence audit verify --checkpoint FILE`).

Entries may carry `state`: digests of the registry and verdict rows the write left behind
(verifier.statehash). Verification (verifier.audit_verify) compares every such row with its
last recorded digest, so a row edited with SQL is caught too.

Two kinds of chain. The **main chain** (`audit_log`, head row 1) takes every write of the API
and the admin commands: its writers run one at a time (SELECT ... FOR UPDATE of the head, and
on PostgreSQL an exclusive advisory lock). A **stream chain** (`audit_stream_log`, one head row
each, named `kafka:<topic>:<partition>`) takes what a stream worker writes for its partitions:
records, rejections, alerts and the verdicts it inserts. Writers on different stream chains run
side by side; they hold the advisory lock shared, so no main-chain write runs meanwhile, and each
entry records the main head it saw (`main_seq`): that places it between two main entries, which
is all the state check needs, because a stream entry may record only verdict rows it inserts
(new rows, which no other writer touches). A registry change therefore cannot hide in a stream
chain: `append` refuses it. Chains are opened by a main-chain entry, so a whole stream chain
deleted with its head is caught too, and checkpoints sign every head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, load_only

from lightfence.model.canonical import canonical_json
from lightfence.verifier.models import AuditHeadRow, AuditRow, AuditStreamRow

GENESIS_HASH = "0" * 64
STATE_KEY = "state"
MAIN_CHAIN = 1
CHAIN_OPEN_ACTION = "audit.chain.open"
WRITERS_LOCK_CLASS = 0x6C65
"""PostgreSQL advisory lock (class, hash of the schema): main-chain writers take it exclusive,
stream writers shared. Advisory locks are database-wide; the schema keeps two verifiers that
share a database (or tests in scratch schemas) out of each other's way."""


class AuditError(RuntimeError):
    """A write that would break the chains' rules (a programming error, or a chain not open)."""


def entry_hash(
    prev_hash: str, seq: int, at_ns: int, actor: str, action: str, subject: str, payload: str
) -> str:
    body = canonical_json([seq, at_ns, actor, action, subject, payload])
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


def stream_entry_hash(
    prev_hash: str,
    chain: int,
    seq: int,
    main_seq: int,
    at_ns: int,
    actor: str,
    action: str,
    subject: str,
    payload: str,
) -> str:
    body = canonical_json(["stream", chain, seq, main_seq, at_ns, actor, action, subject, payload])
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


def on_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_head(session: Session) -> AuditHeadRow:
    """Take the main chain's lock for this transaction (every main-chain write starts here)."""
    held = session.info.get(_HEAD_KEY)
    if isinstance(held, AuditHeadRow):
        return held
    if _STREAM_KEY in session.info:
        raise AuditError("a stream-chain transaction cannot also write the main chain")
    if on_postgresql(session):
        session.execute(_WRITERS_EXCLUSIVE, {"c": WRITERS_LOCK_CLASS})
    head = session.execute(
        select(AuditHeadRow)
        # Not `name`: migrations before 0007 append through here, without that column.
        .options(load_only(AuditHeadRow.seq, AuditHeadRow.hash))
        .where(AuditHeadRow.id == MAIN_CHAIN)
        .with_for_update()
    ).scalar_one_or_none()
    if head is None:  # the migration creates it; this only covers a hand-emptied table
        head = AuditHeadRow(id=MAIN_CHAIN, seq=0, hash=GENESIS_HASH)
        session.add(head)
        session.flush()
    session.info[_HEAD_KEY] = head
    return head


_HEAD_KEY = "audit_head"
_STREAM_KEY = "audit_stream"
_WRITERS_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(:c, hashtext(current_schema()))")
_WRITERS_SHARED = text("SELECT pg_advisory_xact_lock_shared(:c, hashtext(current_schema()))")


@dataclass
class StreamLock:
    main_seq: int
    """The main chain's head while this transaction runs (no main write can run meanwhile)."""
    head: AuditHeadRow
    """The chain this transaction appends to: the lowest of those it locked."""


def lock_stream(session: Session, chains: Sequence[int]) -> StreamLock:
    """Take the locks of a stream write: the writers' lock shared, then the heads of `chains`
    (in id order, so two writers never wait on each other in a cycle). Every stream write
    transaction starts here; the chains must be open (open_chains)."""
    held = session.info.get(_STREAM_KEY)
    if isinstance(held, StreamLock):
        return held
    if _HEAD_KEY in session.info:
        raise AuditError("a main-chain transaction cannot also write a stream chain")
    wanted = sorted(set(chains))
    if not wanted or MAIN_CHAIN in wanted:
        raise AuditError(f"stream chains to lock must be given, and not the main one: {wanted}")
    if on_postgresql(session):
        session.execute(_WRITERS_SHARED, {"c": WRITERS_LOCK_CLASS})
    main_seq = session.execute(
        select(AuditHeadRow.seq).where(AuditHeadRow.id == MAIN_CHAIN)
    ).scalar_one_or_none()
    heads = (
        session.execute(
            select(AuditHeadRow)
            .where(AuditHeadRow.id.in_(wanted))
            .order_by(AuditHeadRow.id)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    missing = sorted(set(wanted) - {h.id for h in heads})
    if missing:
        raise AuditError(f"audit chain(s) {missing} are not open (or their heads were deleted)")
    lock = StreamLock(main_seq=main_seq or 0, head=heads[0])
    session.info[_STREAM_KEY] = lock
    return lock


def open_chains(
    session: Session, names: Iterable[str], *, actor: str, now_ns: int
) -> dict[str, int]:
    """The chain id of each stream chain name; chains not open yet are opened by one main-chain
    entry naming them (so `audit verify` reports one deleted later, head and all)."""
    lock_head(session)
    wanted = sorted(set(names))
    query = select(AuditHeadRow.name, AuditHeadRow.id).where(AuditHeadRow.name.in_(wanted))
    known = {str(name): int(chain) for name, chain in session.execute(query)}
    new = [n for n in wanted if n not in known]
    if new:
        top = session.execute(select(func.max(AuditHeadRow.id))).scalar_one_or_none() or 0
        for offset, name in enumerate(new, 1):
            known[name] = max(top, MAIN_CHAIN) + offset
            session.add(AuditHeadRow(id=known[name], seq=0, hash=GENESIS_HASH, name=name))
        session.flush()
        append(
            session,
            actor=actor,
            action=CHAIN_OPEN_ACTION,
            subject=f"{len(new)} chain(s)",
            payload={"chains": [[known[n], n] for n in new]},
            now_ns=now_ns,
        )
    return {n: known[n] for n in wanted}


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    payload: dict[str, Any],
    now_ns: int,
    state: list[list[str | None]] | None = None,
) -> AuditRow | AuditStreamRow:
    """Append one entry in the caller's transaction (it commits or rolls back with the write):
    to the stream chain it locked, else to the main chain.

    `state`: [table, row key, digest] of covered rows this write left (statehash)."""
    if state:
        payload = {**payload, STATE_KEY: state}
    body = canonical_json(payload)
    stream = session.info.get(_STREAM_KEY)
    if isinstance(stream, StreamLock):
        _refuse_shared_state(action, state)
        head, main_seq = stream.head, stream.main_seq
        seq = head.seq + 1
        digest = stream_entry_hash(
            head.hash, head.id, seq, main_seq, now_ns, actor, action, subject, body
        )
        row: AuditRow | AuditStreamRow = AuditStreamRow(chain=head.id, main_seq=main_seq)
    else:
        head = lock_head(session)
        seq = head.seq + 1
        digest = entry_hash(head.hash, seq, now_ns, actor, action, subject, body)
        row = AuditRow()
    row.seq, row.at_ns, row.actor, row.action = seq, now_ns, actor, action
    row.subject, row.payload, row.prev_hash, row.hash = subject, body, head.hash, digest
    session.add(row)
    head.seq = seq
    head.hash = digest
    return row


def _refuse_shared_state(action: str, state: list[list[str | None]] | None) -> None:
    """A stream entry orders against main entries only: it may record rows no other stream
    writer can touch, which are the verdicts it inserts."""
    for ref in state or []:
        if ref[0] != "verdicts" or ref[2] is None:
            raise AuditError(
                f"{action}: a write of {ref[0]} row {ref[1]} belongs on the main audit chain "
                "(stream chains record only the verdicts they insert)"
            )


def heads(session: Session) -> list[AuditHeadRow]:
    """Every chain's head, the main chain first."""
    return list(session.execute(select(AuditHeadRow).order_by(AuditHeadRow.id)).scalars())


def entry_count(session: Session) -> int:
    """Entries in all chains (each head's seq is its chain's length)."""
    return int(session.execute(select(func.coalesce(func.sum(AuditHeadRow.seq), 0))).scalar_one())
