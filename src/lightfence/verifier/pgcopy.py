"""Stored records written with PostgreSQL's COPY instead of a multi-row INSERT.

A 2,000-record INSERT ... VALUES is one statement with 18,000 placeholders, which psycopg parses
in Python on every call (it caches only short statements): most of a stream worker's database
cost. COPY sends the rows as tab-separated text and parses nothing on the client; the ids come
back from one indexed lookup by record hash (the idempotency key, unique). Same transaction,
same rows, same ids as the INSERT; SQLite keeps the INSERT.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from lightfence.verifier import lookups

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


def _line(r: dict[str, Any], body: str) -> str:
    """One row of COPY text, as is (no field escaped)."""
    return (
        f"{r['record_hash']}\t{r['device_id']}\t{r['landmark_id']}\t{r['session_id']}\t"
        f"{int(r['min_rtt_ns'])}\t{int(r['measured_ns'])}\t{int(r['received_ns'])}\t"
        f"{r['submitted_by']}\t{body}\n"
    )


def _escaped_line(r: dict[str, Any], body: str) -> str:
    # A record's JSON text (MeasurementRecord.to_json_text) escapes every control character,
    # so it holds no tab or newline; its backslashes are doubled by _text like any field's.
    escaped = {k: _text(v) if isinstance(v, str) else v for k, v in r.items()}
    return _line(escaped, _text(body))


def copy_text(rows: Sequence[dict[str, Any]], bodies: Sequence[str]) -> str:
    """COPY text of `rows` with their bodies. Nearly every batch has nothing to escape (hex
    ids, JSON without backslashes): built as is, that is checked on the whole text at once (its
    tabs and newlines must be exactly the separators), and only otherwise escaped row by row."""
    text = "".join(map(_line, rows, bodies))
    n = len(rows)
    if "\\" in text or "\r" in text or text.count("\t") != 8 * n or text.count("\n") != n:
        text = "".join(map(_escaped_line, rows, bodies))
    return text


def copy_records(
    session: Session, rows: Sequence[dict[str, Any]], bodies: Sequence[str]
) -> list[int]:
    """Insert `rows` (RecordRow columns but the body) with COPY, each with its body (JSON
    text); their ids, in the order of `rows`."""
    conn = lookups.driver_connection(session)
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY records ({', '.join(RECORD_COLUMNS)}) FROM STDIN") as copy,
    ):
        copy.write(copy_text(rows, bodies).encode())
    hashes = [r["record_hash"] for r in rows]
    ids = lookups.stored_hashes(session, hashes)
    return [ids[h] for h in hashes]
