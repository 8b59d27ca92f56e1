"""Stored records written with PostgreSQL's COPY instead of a multi-row INSERT.

A 2,000-record INSERT ... VALUES is one statement with 18,000 placeholders, which psycopg parses
in Python on every call (it caches only short statements): most of a stream worker's database
cost. COPY sends the rows as tab-separated text and parses nothing on the client; the ids come
back from one indexed lookup by record hash (the idempotency key, unique). Same transaction,
same rows, same ids as the INSERT; SQLite keeps the INSERT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

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


def _field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, dict | list):
        value = json.dumps(value)
    return str(value).translate(_ESCAPES)


def copy_records(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert `rows` (RecordRow columns) with COPY; their ids, in the order of `rows`."""
    conn = session.connection().connection.driver_connection
    assert conn is not None
    text = "".join("\t".join(_field(r[c]) for c in RECORD_COLUMNS) + "\n" for r in rows)
    hashes = [r["record_hash"] for r in rows]
    with conn.cursor() as cur:
        with cur.copy(f"COPY records ({', '.join(RECORD_COLUMNS)}) FROM STDIN") as copy:
            copy.write(text.encode())
        cur.execute("SELECT record_hash, id FROM records WHERE record_hash = ANY(%s)", [hashes])
        ids = dict(cur.fetchall())
    return [int(ids[h]) for h in hashes]
