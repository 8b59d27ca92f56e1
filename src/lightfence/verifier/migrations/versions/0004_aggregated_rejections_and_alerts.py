"""rejections aggregated with counts; alerts counted; audit baseline of the state tables (issue 17)

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rejections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_received_ns", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("count", sa.BigInteger(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("agg_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_rejections_agg_key", ["agg_key"])
    op.execute("UPDATE rejections SET first_received_ns = received_ns")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("count", sa.BigInteger(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("last_ns", sa.BigInteger(), nullable=True))
    # State rows written before their writes carried state digests are recorded as they are by
    # migration 0010's baseline: it runs the current code (statehash, audit), whose columns and
    # tables exist only from the later migrations on. A database already past this one got its
    # baseline here, and gets 0010's as well.


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        for name in ("last_ns", "count"):
            batch_op.drop_column(name)
    with op.batch_alter_table("rejections", schema=None) as batch_op:
        batch_op.drop_constraint("uq_rejections_agg_key", type_="unique")
        for name in ("agg_key", "count", "first_received_ns"):
            batch_op.drop_column(name)
