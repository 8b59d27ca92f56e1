"""gpu_rounds.invalid_ns and invalid_reason: a stored GPU round that fails batch re-verification
(its row edited, its evidence no longer appraising, its S_floor above the calibration's) is
excluded from verdicts from then on, and its device decided again without it

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gpu_rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invalid_ns", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("invalid_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gpu_rounds", schema=None) as batch_op:
        batch_op.drop_column("invalid_reason")
        batch_op.drop_column("invalid_ns")
