"""Stored records written with PostgreSQL's COPY instead of a multi-row INSERT.

A 2,000-record INSERT ... VALUES is one statement with 18,000 placeholders, which psycopg parses
in Python on every call (it caches only short statements): most of a stream worker's database
cost. COPY sends the rows as tab-separated text and parses nothing on the client; the ids come
back from one indexed lookup by record hash (the idempotency key, unique). Same transaction,
same rows, same ids as the INSERT; SQLite keeps the INSERT.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from lightfence.verifier.sqlin import text_array

RECORD_COLUMNS = (
    "record_hash",
    "device_id",
    "landmark_id",
    "session_id",
    "min_rtt_ns",
    "measured_ns",
    "received_ns",
    "submitted_by",
    "body",
)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SPECIAL = re.compile(r"[\\\t\n\r]")


def _text(value: str) -> str:
    """A text field for COPY: backslash, tab, newline and CR escaped (most ids have none)."""
    if _SPECIAL.search(value):
        return value.translate(_ESCAPES)
    return value


def _line(r: dict[str, Any]) -> str:
    # json.dumps escapes every control character and (ensure_ascii) all non-ASCII, so the JSON
    # text can hold no tab or newline; its backslashes are doubled by _text like any field's.
    texts: tuple[str, ...] = (
        r["record_hash"],
        r["device_id"],
        r["landmark_id"],
        r["session_id"],
        r["submitted_by"],
        json.dumps(r["body"]),
    )
    if _SPECIAL.search("".join(texts)):  # one search per row; most rows need no escape
        texts = tuple(_text(t) for t in texts)
    digest, device, landmark, session, by, body = texts
    return (
        f"{digest}\t{device}\t{landmark}\t{session}\t{int(r['min_rtt_ns'])}\t"
        f"{int(r['measured_ns'])}\t{int(r['received_ns'])}\t{by}\t{body}\n"
    )


def copy_records(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert `rows` (RecordRow columns) with COPY; their ids, in the order of `rows`."""
    conn = session.connection().connection.driver_connection
    assert conn is not None
    text = "".join(_line(r) for r in rows)
    hashes = [r["record_hash"] for r in rows]
    with conn.cursor() as cur:
        with cur.copy(f"COPY records ({', '.join(RECORD_COLUMNS)}) FROM STDIN") as copy:
            copy.write(text.encode())
        cur.execute(
            "SELECT record_hash, id FROM records WHERE record_hash = ANY(CAST(%s AS text[]))",
            [text_array(hashes) or "{}"],
        )
        ids = dict(cur.fetchall())
    return [int(ids[h]) for h in hashes]
