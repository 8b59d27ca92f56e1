"""The verifier's side of the gate: the one function the service calls to answer
`GET /devices/{device_id}/token`.

Kept apart from `token` so the service's dependency on the gate is one small, reviewable call.
The endpoint contract (status codes, body) is written in docs/gate.md and in `token_response`.
"""

from __future__ import annotations

import math
from typing import Any

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.gate.token import issue_token, parse_token
from lightfence.model.policy import PolicySpec

DEFAULT_TOKEN_TTL_S = 300.0
"""Five minutes: long enough to ride out a verifier restart, short enough that a verdict that
flips to REFUTED reaches every gate within minutes."""
DEFAULT_MAX_VERDICT_AGE_S = 3600.0
"""A verdict older than this is not re-signed as VERIFIED: the device may have moved since."""


def token_for_latest_verdict(
    device_id: str,
    verdict: VerdictKind,
    policy: PolicySpec,
    signing_key: SigningKey,
    now_unix_s: float,
    ttl_s: float = DEFAULT_TOKEN_TTL_S,
    *,
    verdict_at_unix_s: float | None = None,
    max_verdict_age_s: float = DEFAULT_MAX_VERDICT_AGE_S,
) -> str:
    """The compact token the service returns for a device's latest verdict.

    `policy` is the verdict's: its region and bound, the liars it tolerated as a count (never
    'auto', which a gate could only read as 0) and what it locates (the token's `locates`).

    When `verdict_at_unix_s` (when the verdict was computed) is given and the verdict is older
    than `max_verdict_age_s`, a VERIFIED verdict is signed as UNVERIFIED: a token must never
    vouch for a position that has not been measured recently. Negative verdicts stay as they are.
    """
    if (
        verdict is VerdictKind.VERIFIED
        and verdict_at_unix_s is not None
        and not (
            math.isfinite(verdict_at_unix_s) and now_unix_s - verdict_at_unix_s <= max_verdict_age_s
        )
    ):
        verdict = VerdictKind.UNVERIFIED
    token = issue_token(
        device_id=device_id,
        verdict=verdict,
        policy=policy.canonical_text(with_locates=False),
        signing_key=signing_key,
        now_unix_s=now_unix_s,
        ttl_s=ttl_s,
        locates=policy.locates,
    )
    return token.to_text()


def token_response(token_text: str) -> dict[str, Any]:
    """The JSON body of a 200 answer. Gates read only `token`; the rest is for people."""
    token, _ = parse_token(token_text)
    spec = token.policy_spec
    return {
        "token": token_text,
        "device_id": token.device_id,
        "verdict": token.verdict.value,
        "policy": token.policy,
        "policy_spec": None if spec is None else spec.to_json_dict(),
        "issued_at_unix_s": token.issued_at_unix_s,
        "expires_at_unix_s": token.expires_at_unix_s,
        "verifier_key_id": token.verifier_key_id,
        "locates": token.locates.value,
    }
