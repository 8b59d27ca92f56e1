"""Engines, sessions and schema migration for SQLite (default) and PostgreSQL (psycopg 3).

SQLite gets two engines on the same file: writers open `BEGIN IMMEDIATE`, so two writers queue
on the file lock instead of failing when one upgrades a read lock (SQLITE_BUSY_SNAPSHOT); readers
use plain deferred transactions and never block on writers (WAL). `synchronous=NORMAL` in WAL mode
keeps every committed transaction across a killed process (only power loss can drop the last few).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lightfence.verifier import statehash
from lightfence.verifier.config import normalise_db_url

log = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_MS = 60_000


class DatabaseError(Exception):
    """The database URL is unusable or the database cannot be reached; the message says why."""


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """The verifier's connection to its database: `write()` and `read()` session scopes."""

    def __init__(self, url: str) -> None:
        self.url = normalise_db_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise DatabaseError(
                f"cannot parse database URL {url!r}; use sqlite:///PATH or "
                "postgresql://USER:PASSWORD@HOST:PORT/DB"
            ) from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database in (None, "", ":memory:"):
                raise DatabaseError("use a SQLite file (sqlite:///PATH); in-memory is not shared")
            self.write_engine = _sqlite_engine(self.url, immediate=True)
            self.read_engine = _sqlite_engine(self.url, immediate=False)
        elif parsed.get_backend_name() == "postgresql":
            self.write_engine = create_engine(
                self.url, pool_size=10, max_overflow=30, pool_pre_ping=True
            )
            self.read_engine = self.write_engine
        else:
            raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r}")
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        statehash.install(self._write)  # every covered row written lands in the audit chain
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._write.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


def _alembic_config() -> Config:
    cfg = Config()
    location = resources.files("lightfence.verifier") / "migrations"
    cfg.set_main_option("script_location", str(location))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to the newest migration, in place. Safe to run on every start."""
    cfg = _alembic_config()
    try:
        with db.write_engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except Exception as exc:  # a driver error here means "cannot reach or create the schema"
        if isinstance(exc, DatabaseError):
            raise
        raise DatabaseError(f"cannot migrate {db.write_engine.url!r}: {exc}") from exc


def schema_revision(db: Database) -> tuple[str | None, str]:
    """(current revision in the database, newest revision shipped)."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with db.read_engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head or ""


ROLLED_BACK_RETRIES = 5
_ROLLED_BACK_SQLSTATES = frozenset({"40P01", "40001"})
"""PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back,
nothing of it was written, and running it again is safe."""

T = TypeVar("T")


def again_if_rolled_back(work: Callable[[], T]) -> T:
    """`work()` (whole transactions), run again up to ROLLED_BACK_RETRIES times when PostgreSQL
    rolls it back as deadlocked. Writers on different stream chains lock device and landmark
    rows side by side (verifier.audit), so an occasional deadlock is expected, not an error."""
    for attempt in range(1, ROLLED_BACK_RETRIES + 1):
        try:
            return work()
        except OperationalError as exc:
            state = getattr(exc.orig, "sqlstate", None)
            if state not in _ROLLED_BACK_SQLSTATES or attempt == ROLLED_BACK_RETRIES:
                raise
            log.info("transaction rolled back by the database (%s); running it again", state)
    raise AssertionError("unreachable")
