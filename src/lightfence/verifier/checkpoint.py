"""Signed checkpoints of the audit chain's head, kept outside the database.

The chain alone proves only that it is self-consistent: someone with write access to the
database can cut its tail and rewind `audit_head`, or rewrite an entry and re-hash everything
after it. A checkpoint is the verifier's Ed25519 signature over (seq, head hash, time); the
verifier appends one to a file (JSON Lines) and optionally POSTs it to a webhook, so copies
live where the database's writer cannot reach. `lightfence audit verify --checkpoint FILE`
then demands that entry `seq` of the chain still has the signed hash: a truncated, rewound or
re-hashed chain cannot. Changes after the newest checkpoint are covered from the next one on
(every `checkpoint_interval_s`).

Version 2 also signs the head of every stream chain (verifier.audit): `chains` lists
[chain id, seq, head hash] for each one with entries; version 1 documents (main chain only)
are still checked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from lightfence.crypto.keys import SigningKey, key_id, verify_signature
from lightfence.model.canonical import canonical_json
from lightfence.verifier.audit import MAIN_CHAIN, heads
from lightfence.verifier.models import AuditHeadRow, AuditRow, AuditStreamRow

CHECKPOINT_TYPE = "lightfence.audit-checkpoint"
VERSION = 2


class CheckpointError(ValueError):
    pass


def _signed_part(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return canonical_json(body).encode()


def make(session: Session, key: SigningKey, now_ns: int) -> dict[str, Any] | None:
    """A signed checkpoint of every chain's current head, or None for an empty log."""
    rows = heads(session)
    main = next((h for h in rows if h.id == MAIN_CHAIN), None)
    streams = [[h.id, h.seq, h.hash] for h in rows if h.id != MAIN_CHAIN and h.seq > 0]
    if main is None or (main.seq == 0 and not streams):
        return None
    doc: dict[str, Any] = {
        "type": CHECKPOINT_TYPE,
        "version": VERSION,
        "seq": main.seq,
        "head_hash": main.hash,
        "chains": streams,
        "at_unix_ns": now_ns,
        "public_key": key.public_bytes.hex(),
        "key_id": key.key_id,
    }
    doc["signature"] = key.sign(_signed_part(doc)).hex()
    return doc


def position(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What a checkpoint signs the position of: equal for two checkpoints of unchanged chains."""
    return (doc.get("seq"), str(doc.get("chains")))


def append_to_file(path: Path, doc: dict[str, Any]) -> None:
    """Append one line and fsync: a checkpoint reported written survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(doc, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_file(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint file {path}: {exc.strerror}") from None
    docs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            raise CheckpointError(f"{path}:{n}: not a JSON checkpoint") from None
        if not isinstance(doc, dict) or doc.get("type") != CHECKPOINT_TYPE:
            raise CheckpointError(f"{path}:{n}: not a lightfence audit checkpoint")
        docs.append(doc)
    if not docs:
        raise CheckpointError(f"{path} holds no checkpoint")
    return docs


@dataclass(frozen=True)
class CheckpointReport:
    checked: int
    newest_seq: int
    key_ids: tuple[str, ...]
    problems: list[str]


def check(
    session: Session, docs: Iterable[dict[str, Any]], trusted_key_hex: str | None = None
) -> CheckpointReport:
    """Check each checkpoint's signature, then that the chain still holds its head."""
    problems: list[str] = []
    keys: set[str] = set()
    newest = 0
    n = 0
    head = session.get(AuditHeadRow, 1)
    for doc in docs:
        n += 1
        try:
            seq, digest = int(doc["seq"]), str(doc["head_hash"])
            public = bytes.fromhex(str(doc["public_key"]))
            signature = bytes.fromhex(str(doc["signature"]))
        except (KeyError, TypeError, ValueError):
            problems.append(f"checkpoint {n}: malformed")
            continue
        if trusted_key_hex is not None and public.hex() != trusted_key_hex.lower():
            problems.append(f"checkpoint {n} (entry {seq}): signed by another key")
            continue
        if not verify_signature(public, signature, _signed_part(doc)):
            problems.append(f"checkpoint {n} (entry {seq}): signature does not verify")
            continue
        keys.add(key_id(public))
        newest = max(newest, seq)
        problems.extend(_main_problem(session, head, seq, digest))
        try:
            chains = [(int(c), int(q), str(h)) for c, q, h in doc.get("chains") or []]
        except (TypeError, ValueError):
            problems.append(f"checkpoint {n}: malformed chain heads")
            continue
        for chain, chain_seq, chain_hash in chains:
            problems.extend(_stream_problem(session, chain, chain_seq, chain_hash))
    if len(keys) > 1 and trusted_key_hex is None:
        problems.append(
            f"checkpoints are signed by {len(keys)} different keys ({', '.join(sorted(keys))}); "
            "pin the verifier's key with --public-key"
        )
    return CheckpointReport(n, newest, tuple(sorted(keys)), problems)


def _main_problem(session: Session, head: AuditHeadRow | None, seq: int, digest: str) -> list[str]:
    if seq == 0:
        return []
    row = session.get(AuditRow, seq)
    if row is None:
        last = 0 if head is None else head.seq
        return [
            f"signed checkpoint names entry {seq}, but the log ends at entry {last}: "
            "entries were cut off and the head rewound"
        ]
    if row.hash != digest:
        return [
            f"entry {seq} hashes to {row.hash[:16]}…, its signed checkpoint says "
            f"{digest[:16]}…: the chain up to it was rewritten (re-hashed)"
        ]
    return []


def _stream_problem(session: Session, chain: int, seq: int, digest: str) -> list[str]:
    row = session.get(AuditStreamRow, (chain, seq))
    if row is None:
        head = session.get(AuditHeadRow, chain)
        last = "is gone" if head is None else f"ends at entry {head.seq}"
        return [
            f"signed checkpoint names entry {seq} of stream chain {chain}, but that chain {last}: "
            "entries were cut off"
        ]
    if row.hash != digest:
        return [
            f"stream chain {chain}: entry {seq} hashes to {row.hash[:16]}…, its signed "
            f"checkpoint says {digest[:16]}…: the chain up to it was rewritten (re-hashed)"
        ]
    return []
