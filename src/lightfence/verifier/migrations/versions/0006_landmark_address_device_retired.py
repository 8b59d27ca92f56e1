"""landmarks.address and gpu_address (the signed registry agents measure from), devices.retired_ns
(a retired device's records and tokens are refused) (issue 18)

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("landmarks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("gpu_address", sa.String(length=300), nullable=True))
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retired_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("retired_ns")
    with op.batch_alter_table("landmarks", schema=None) as batch_op:
        batch_op.drop_column("gpu_address")
        batch_op.drop_column("address")
