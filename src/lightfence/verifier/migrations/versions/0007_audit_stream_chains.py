"""audit_stream_log and audit_head.name: per-partition audit chains for stream workers, so that
workers on different partitions do not queue on the main chain's one lock (issue 22)

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=300), nullable=True))
        batch_op.create_unique_constraint("uq_audit_head_name", ["name"])
    op.create_table(
        "audit_stream_log",
        sa.Column("chain", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("main_seq", sa.BigInteger(), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", "seq"),
    )


def downgrade() -> None:
    op.drop_table("audit_stream_log")
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_head_name", type_="unique")
        batch_op.drop_column("name")
