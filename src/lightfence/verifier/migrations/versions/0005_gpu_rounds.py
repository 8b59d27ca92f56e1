"""GPU-signed rounds: accepted rounds with their evidence, the enrolled GPU and the required
`locates` on the licence, what each verdict locates (issue 16)

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gpu_rounds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("landmark_id", sa.String(length=255), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("round_no", sa.Integer(), nullable=False),
        sa.Column("gpu_id", sa.String(length=32), nullable=False),
        sa.Column("rtt_ns", sa.BigInteger(), nullable=False),
        sa.Column("floor_ns", sa.BigInteger(), nullable=False),
        sa.Column("measured_ns", sa.BigInteger(), nullable=False),
        sa.Column("received_ns", sa.BigInteger(), nullable=False),
        sa.Column("submitted_by", sa.String(length=255), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.ForeignKeyConstraint(["landmark_id"], ["landmarks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_hash"),
        sa.UniqueConstraint(
            "landmark_id", "session_id", "round_no", name="uq_gpu_rounds_landmark_session_round"
        ),
    )
    with op.batch_alter_table("gpu_rounds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_gpu_rounds_device_measured", ["device_id", "measured_ns"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_gpu_rounds_landmark_id"), ["landmark_id"], unique=False
        )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpu_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("require_locates", sa.String(length=8), nullable=False, server_default="key")
        )
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("locates", sa.String(length=8), nullable=False, server_default="key")
        )
        batch_op.add_column(sa.Column("key_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("gpu_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("gpu_inputs", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("alert", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        for name in ("alert", "gpu_inputs", "gpu_kind", "key_kind", "locates"):
            batch_op.drop_column(name)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        for name in ("require_locates", "gpu_id"):
            batch_op.drop_column(name)
    with op.batch_alter_table("gpu_rounds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gpu_rounds_landmark_id"))
        batch_op.drop_index("ix_gpu_rounds_device_measured")
    op.drop_table("gpu_rounds")
