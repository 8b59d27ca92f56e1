"""Alembic environment: runs on the connection `db.upgrade` hands in (or a URL: autogenerate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from lightfence.verifier.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///autogen.db")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
