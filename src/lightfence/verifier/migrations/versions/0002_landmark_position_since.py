"""landmarks.position_since_ns: records older than a landmark's current position stop counting

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("landmarks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("position_since_ns", sa.BigInteger(), nullable=False, server_default="0")
        )
    # Existing landmarks: one updated since its registration may have moved; count its position
    # from that update (the conservative end). 0 means "since registration".
    op.execute(
        "UPDATE landmarks SET position_since_ns = "
        "CASE WHEN updated_ns > created_ns THEN updated_ns ELSE 0 END"
    )


def downgrade() -> None:
    with op.batch_alter_table("landmarks", schema=None) as batch_op:
        batch_op.drop_column("position_since_ns")
