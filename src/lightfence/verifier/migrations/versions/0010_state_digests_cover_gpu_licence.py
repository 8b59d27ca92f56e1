"""the audit chain's state digests cover a device's gpu_id, require_locates and retired_ns, and a
verdict's locates, key and GPU kinds, GPU inputs and alert: one baseline entry records every
covered row with them, so `audit verify` checks them from here on; stored records and GPU
rounds are checked against the entries that stored and marked them (verifier.audit_rows)

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Mapping, Sequence
from typing import Any

from alembic import op
from sqlalchemy.orm import Session

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OLDER_COLUMNS = {
    "devices": (
        "operator", "provider", "trust_level", "public_key", "key_id", "attributes",
        "attestation", "gpu_uuid", "policy", "bound", "declared_country", "site_lat", "site_lon",
        "checkin_interval_s", "enrolled_ns",
    ),
    "verdicts": (
        "device_id", "kind", "reason_code", "reason", "policy", "bound", "claimed", "as_of_ns",
        "computed_ns", "inputs", "liars", "tolerated_liars", "implicated",
    ),
}  # fmt: skip
"""The column lists this migration replaces (landmarks and api_tokens keep theirs)."""


def upgrade() -> None:
    # Digests recorded before this use the older column lists. A row that still matches the
    # digest the chain last recorded for it (under the older lists) is recorded afresh; one
    # that does not (edited, inserted or deleted with SQL before the upgrade) is left out, so
    # `audit verify` goes on reporting it rather than this baseline blessing it. A database
    # with no state recorded at all (from before migration 0004) has every row recorded.
    # It also names the highest record and GPU-round ids and their counts now: `audit verify`
    # checks rows stored later against the entries that stored them (verifier.audit_rows).
    from dataclasses import replace

    from lightfence.verifier import audit_rows, audit_verify, statehash

    session = Session(bind=op.get_bind())
    recorded = audit_verify.recorded_digests(session)
    older = {
        table: replace(c, columns=OLDER_COLUMNS.get(table, c.columns))
        for table, c in statehash.COVERED.items()
    }

    def unchanged(table: str, values: Mapping[str, Any]) -> bool:
        last = recorded.get((table, str(values[statehash.COVERED[table].key])))
        # Under the newer lists too: this migration run again after a downgrade.
        return last is not None and last in (
            statehash.digest(table, values, older),
            statehash.digest(table, values),
        )

    statehash.append_baseline(
        session, audit_rows.baseline_payload(session), keep=unchanged if recorded else None
    )
    session.flush()


def downgrade() -> None:
    # The older column lists cannot be recomputed from here: after a downgrade, `audit verify`
    # reports the rows until they are written again.
    pass
