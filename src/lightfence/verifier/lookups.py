"""Ingestion's batch lookups ("which of these 2,000 are stored?"), as plain values.

On PostgreSQL each is one short statement with one array parameter on the session's own
connection (same transaction), read as tuples: SQLAlchemy's statement compilation and result
rows cost four to five times the query itself here, about 7 us a record over a stream worker's
batch (docs/benchmarks.md). Other databases (SQLite) take the same queries through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lightfence.verifier.models import DeviceRow, RecordRow
from lightfence.verifier.sqlin import one_of, text_array

DEVICE_COLUMNS = (
    DeviceRow.id,
    DeviceRow.key_id,
    DeviceRow.public_key,
    DeviceRow.trust_level,
    DeviceRow.gpu_id,
    DeviceRow.retired_ns,
)
"""What ingestion reads of a device, in this order (id, key id, public key hex, trust level,
GPU id, retired_ns)."""

_STORED_HASHES = "SELECT record_hash, id FROM records WHERE record_hash = ANY(CAST(%s AS text[]))"
_STORED_SESSIONS = (
    "SELECT landmark_id, session_id, id FROM records WHERE session_id = ANY(CAST(%s AS text[]))"
)
_DEVICES = (
    f"SELECT {', '.join(c.key for c in DEVICE_COLUMNS)} FROM devices "
    "WHERE id = ANY(CAST(%s AS text[]))"
)


def stored_hashes(session: Session, hashes: Collection[str]) -> dict[str, int]:
    """Record id by record hash, for the hashes already stored."""
    if not hashes:
        return {}
    rows = _raw(session, _STORED_HASHES, hashes)
    if rows is None:
        query = select(RecordRow.record_hash, RecordRow.id)
        rows = [
            tuple(r) for r in session.execute(query.where(one_of(RecordRow.record_hash, hashes)))
        ]
    return {h: int(i) for h, i in rows}


def stored_sessions(session: Session, session_ids: Collection[str]) -> dict[tuple[str, str], int]:
    """Record id by (landmark id, session id hex), for stored records of these sessions."""
    if not session_ids:
        return {}
    rows = _raw(session, _STORED_SESSIONS, session_ids)
    if rows is None:
        query = select(RecordRow.landmark_id, RecordRow.session_id, RecordRow.id)
        rows = [
            tuple(r)
            for r in session.execute(query.where(one_of(RecordRow.session_id, session_ids)))
        ]
    return {(lm, sid): int(i) for lm, sid, i in rows}


def devices(session: Session, device_ids: Collection[str]) -> list[tuple[Any, ...]]:
    """DEVICE_COLUMNS of the enrolled devices among `device_ids`."""
    if not device_ids:
        return []
    rows = _raw(session, _DEVICES, device_ids)
    if rows is None:
        query = select(*DEVICE_COLUMNS).where(one_of(DeviceRow.id, device_ids))
        rows = [tuple(r) for r in session.execute(query)]
    return rows


def _raw(session: Session, sql: str, values: Collection[str]) -> list[tuple[Any, ...]] | None:
    """Rows of `sql` (one text-array parameter) on PostgreSQL; None elsewhere."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    literal = text_array(list(values))
    if literal is None:
        raise TypeError("lookups take text values")
    with driver_connection(session).cursor() as cur:
        cur.execute(sql, [literal])
        rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


def driver_connection(session: Session) -> Any:
    """The psycopg connection under the session's transaction, for what SQLAlchemy's layers
    cost too much per batch (raw lookups, COPY)."""
    conn = session.connection().connection.driver_connection
    assert conn is not None
    return conn
