"""verdicts: tolerated liars and implicated landmarks; landmarks: blame scores (issue 9)

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Verdicts stored before this revision keep liars NULL (setting unknown), f = 0, none named.
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("liars", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("tolerated_liars", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("implicated", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("landmarks", schema=None) as batch_op:
        for name in ("implicated_named", "implicated_alone"):
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("implicated_blame", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("blame_since_ns", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("landmarks", schema=None) as batch_op:
        for name in ("blame_since_ns", "implicated_blame", "implicated_alone", "implicated_named"):
            batch_op.drop_column(name)
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        for name in ("implicated", "tolerated_liars", "liars"):
            batch_op.drop_column(name)
