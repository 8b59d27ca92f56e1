"""records.invalid_ns and invalid_reason: a stored record that fails batch re-verification is
excluded from verdicts from then on, and its device decided again without it

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invalid_ns", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("invalid_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_column("invalid_reason")
        batch_op.drop_column("invalid_ns")
