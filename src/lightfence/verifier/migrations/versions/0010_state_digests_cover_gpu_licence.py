"""the audit chain's state digests cover a device's gpu_id, require_locates and retired_ns, and a
verdict's locates, key and GPU kinds, GPU inputs and alert: one baseline entry records every
covered row with them, so `audit verify` checks them from here on; stored records and GPU
rounds are checked against the entries that stored and marked them (verifier.audit_rows)

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy.orm import Session

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Digests recorded before this use the older column lists: each row's latest digest is
    # now this entry's. A row edited with SQL before this migration is blessed by it, as any
    # row was by migration 0004's baseline; checkpoints signed before it still hold.
    # It also names the highest record and GPU-round ids now: `audit verify` checks rows
    # stored later against the entries that stored them (verifier.audit_rows).
    from lightfence.verifier import audit_rows, statehash

    session = Session(bind=op.get_bind())
    statehash.append_baseline(session, audit_rows.baseline_payload(session))
    session.flush()


def downgrade() -> None:
    # The older column lists cannot be recomputed from here: after a downgrade, `audit verify`
    # reports the rows until they are written again.
    pass
