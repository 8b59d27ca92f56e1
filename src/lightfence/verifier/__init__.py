"""The verifier service: fleet registry, record ingestion, verdict history, alerts and audit trail.

Layers inside: `models` (tables) and `db` (engines, sessions) hold state; `store`, `ingest`,
`verdicts`, `alerts`, `crosscheck`, `audit` and `auth` are the service logic over a session; `api`
is a thin FastAPI adapter. Physics is never done here: every verdict comes from `lightfence.core`.
"""

from lightfence.extras import require

require("verifier", "lightfence.verifier")
