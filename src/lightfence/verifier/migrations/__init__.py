"""Alembic migrations, shipped inside the package and run by `db.upgrade` on start."""
