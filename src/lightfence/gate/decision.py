"""The gate's decision: may work start on this device now? Pure: no clock, no I/O.

Inputs: what the token source gave (a token text, or why there is none), the token cached from
the last check, the verifier's public keys, the operator's policy and the time. Output: a
`Decision` with an answer, a stable reason code and a sentence for people.

Answers and exit codes (the CLI exits with `Decision.exit_code`):

    allowed  0   an authentic, unexpired VERIFIED token for this device (or fail-open grace)
    denied   1   anything else the policy rules on: a negative verdict, a forged, foreign or
                 malformed token, no token, an expired token under fail-closed
    unknown  2   the gate could not apply the policy at all (usage error, unreadable key,
                 decision log not writable); integrations must treat it as "not allowed"

Rules, in order:
1. A token from the source that fails authentication (malformed, unknown key, forged, other
   device) denies, in every mode, whatever the cache holds: that is an attack or a
   misconfiguration, never an outage.
2. Of the authentic tokens at hand (fresh and cached) the newest by issued-at rules, so a fresh
   REFUTED beats a cached VERIFIED, and a replayed older token cannot mask a newer one.
3. A token issued further in the future than the clock-skew allowance denies.
4. A verdict other than VERIFIED denies, expired or not; so does a token whose policy does not
   satisfy the one the operator requires (when it names one), compared as structures
   (model.policy.satisfies: same or narrower region, bound and liars at least as strict), and
   one that locates less than the operator requires. The detail says what differs.
5. An unexpired VERIFIED token allows.
6. An expired VERIFIED token denies under fail-closed. Under fail-open it allows until
   `grace_s` after its expiry, unless the verifier answered that it has no verdict for the
   device: grace rides out a verifier that cannot be reached, not one that says no.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from lightfence.core.kinds import VerdictKind
from lightfence.gate.token import (
    DEFAULT_MAX_CLOCK_SKEW_S,
    TokenError,
    TokenExpired,
    VerdictToken,
    authenticate_token,
    check_validity,
)
from lightfence.model.policy import PolicySpec, shortfalls
from lightfence.model.trust import Locates

EXIT_ALLOWED = 0
EXIT_DENIED = 1
EXIT_UNKNOWN = 2
MAX_GRACE_S = 7 * 24 * 3600.0
"""Longest fail-open grace accepted: beyond a week an outage is a policy question, not a blip."""


class Answer(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return {Answer.ALLOWED: EXIT_ALLOWED, Answer.DENIED: EXIT_DENIED}.get(self, EXIT_UNKNOWN)


class GateMode(StrEnum):
    FAIL_CLOSED = "fail-closed"
    """No valid token, no work. The default."""
    FAIL_OPEN = "fail-open"
    """A VERIFIED token keeps allowing for a grace period after it expires."""


class SourceStatus(StrEnum):
    TOKEN = "token"
    """The source gave a token text (authentic or not is decided here)."""
    UNAVAILABLE = "unavailable"
    """No token: verifier unreachable, timed out, answered 5xx, or the token file is missing."""
    NO_VERDICT = "no-verdict"
    """The verifier is up and says it has no verdict for this device (HTTP 404)."""


@dataclass(frozen=True)
class Fetched:
    """What the token source gave for one device."""

    status: SourceStatus
    source: str
    """Where the gate looked, for the log: `verifier:<url>` or `file:<path>`."""
    token_text: str | None = None
    detail: str = ""
    """Why there is no token, for people (connection refused, HTTP 503, ...)."""


@dataclass(frozen=True)
class GatePolicy:
    """The operator's choices. Validated at construction."""

    mode: GateMode = GateMode.FAIL_CLOSED
    grace_s: float = 0.0
    """Fail-open only: how long after a VERIFIED token's expiry work may still start."""
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    expected_policy: PolicySpec | None = None
    """When set, a token whose policy does not satisfy it denies (model.policy.satisfies)."""
    required_locates: Locates = Locates.KEY
    """`gpu`: only a verdict from GPU-signed rounds allows (docs/trust.md); a key verdict denies.
    An `expected_policy` that says `locates: gpu` requires the same."""

    @property
    def required_spec(self) -> PolicySpec | None:
        """The expected policy with `required_locates` folded in (None without one)."""
        need = self.expected_policy
        if need is None or need.locates.rank >= self.required_locates.rank:
            return need
        return replace(need, locates=self.required_locates)

    def __post_init__(self) -> None:
        if self.expected_policy is not None and not isinstance(self.expected_policy, PolicySpec):
            raise ValueError(
                "expected_policy must be a PolicySpec (model.policy.parse_policy_spec)"
            )
        if not math.isfinite(self.grace_s) or not 0 <= self.grace_s <= MAX_GRACE_S:
            raise ValueError(f"grace must be between 0 and {MAX_GRACE_S:.0f} s, got {self.grace_s}")
        if self.grace_s > 0 and self.mode is not GateMode.FAIL_OPEN:
            raise ValueError("a grace period only applies to --mode fail-open")
        if not math.isfinite(self.max_clock_skew_s) or not 0 <= self.max_clock_skew_s <= 3600:
            raise ValueError(
                f"clock skew must be between 0 and 3600 s, got {self.max_clock_skew_s}"
            )


@dataclass(frozen=True)
class Decision:
    device_id: str
    answer: Answer
    reason: str
    """Stable code: verified, grace, verdict-refuted, token-forged, no-token, ... (docs/gate.md)."""
    detail: str
    decided_at_unix_s: float
    mode: GateMode | None
    grace_s: float
    source: str
    source_status: SourceStatus | None
    token: VerdictToken | None = None
    """The authentic token the decision rests on, if any."""
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    """The skew allowance in force, logged so an audit can re-apply the same rule."""
    token_text: str | None = None
    """Its compact text, logged so an auditor can re-check the signature offline."""
    required_policy: str | None = None
    """The operator's required policy (canonical text), when it named one."""
    required_locates: Locates = Locates.KEY
    """What the verdict had to locate (`--require`), logged so an audit re-applies it even
    without a required policy."""

    @property
    def exit_code(self) -> int:
        return self.answer.exit_code

    def to_json_dict(self) -> dict[str, Any]:
        t = self.token
        return {
            "device_id": self.device_id,
            "answer": self.answer.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "detail": self.detail,
            "decided_at": datetime.fromtimestamp(self.decided_at_unix_s, UTC).isoformat(),
            "decided_at_unix_s": self.decided_at_unix_s,
            "mode": None if self.mode is None else self.mode.value,
            "grace_s": self.grace_s,
            "max_clock_skew_s": self.max_clock_skew_s,
            "source": self.source,
            "source_status": None if self.source_status is None else self.source_status.value,
            "verdict": None if t is None else t.verdict.value,
            "locates": None if t is None else t.locates.value,
            "policy": None if t is None else t.policy,
            "required_policy": self.required_policy,
            "required_locates": self.required_locates.value,
            "token_issued_at_unix_s": None if t is None else t.issued_at_unix_s,
            "token_expires_at_unix_s": None if t is None else t.expires_at_unix_s,
            "verifier_key_id": None if t is None else t.verifier_key_id,
            "token": self.token_text,
        }


def unknown_decision(
    device_id: str, reason: str, detail: str, *, now_unix_s: float, source: str = ""
) -> Decision:
    """The answer when the gate cannot apply its policy (exit 2)."""
    return Decision(
        device_id=device_id,
        answer=Answer.UNKNOWN,
        reason=reason,
        detail=detail,
        decided_at_unix_s=now_unix_s,
        mode=None,
        grace_s=0.0,
        source=source,
        source_status=None,
    )


def decide(
    device_id: str,
    fetched: Fetched,
    *,
    cached_text: str | None,
    verifier_public_keys: bytes | list[bytes],
    policy: GatePolicy,
    now_unix_s: float,
) -> Decision:
    """Apply the rules of the module docstring. Never raises on bad tokens: they deny."""

    def answer(
        ans: Answer, reason: str, detail: str, chosen: tuple[VerdictToken, str] | None = None
    ) -> Decision:
        return Decision(
            device_id=device_id,
            answer=ans,
            reason=reason,
            detail=detail,
            decided_at_unix_s=now_unix_s,
            mode=policy.mode,
            grace_s=policy.grace_s,
            source=fetched.source,
            source_status=fetched.status,
            token=None if chosen is None else chosen[0],
            token_text=None if chosen is None else chosen[1],
            max_clock_skew_s=policy.max_clock_skew_s,
            required_policy=None if need is None else need.canonical_text(),
            required_locates=policy.required_locates if need is None else need.locates,
        )

    need = policy.required_spec
    candidates: list[tuple[VerdictToken, str]] = []
    if fetched.status is SourceStatus.TOKEN:
        text = fetched.token_text or ""
        try:
            candidates.append(
                (authenticate_token(text, verifier_public_keys, device_id=device_id), text)
            )
        except TokenError as exc:
            return answer(Answer.DENIED, exc.reason, f"{fetched.source}: {exc}")
    if cached_text is not None:
        try:
            cached = authenticate_token(cached_text, verifier_public_keys, device_id=device_id)
        except TokenError:
            pass  # a damaged or foreign cache entry is just not evidence; the fresh source rules
        else:
            candidates.append((cached, cached_text))

    if not candidates:
        why = fetched.detail or fetched.status.value
        if fetched.status is SourceStatus.NO_VERDICT:
            return answer(Answer.DENIED, "no-verdict", f"{fetched.source}: {why}")
        return answer(
            Answer.DENIED, "no-token", f"no token for the device ({fetched.source}: {why})"
        )

    # Newest wins; on a tie the fresh token (listed first) is kept by max().
    chosen = max(candidates, key=lambda c: c[0].issued_at_unix_s)
    token = chosen[0]
    origin = (
        "fresh" if chosen is candidates[0] and fetched.status is SourceStatus.TOKEN else "cached"
    )
    try:
        check_validity(token, now_unix_s=now_unix_s, max_clock_skew_s=policy.max_clock_skew_s)
        expired: TokenExpired | None = None
    except TokenExpired as exc:
        expired = exc
    except TokenError as exc:
        return answer(Answer.DENIED, exc.reason, f"{origin} token: {exc}", chosen)

    if token.verdict is not VerdictKind.VERIFIED:
        return answer(
            Answer.DENIED,
            f"verdict-{token.verdict.value.lower()}",
            f"the verifier's latest verdict for the device is {token.verdict.value} "
            f"under policy {token.policy!r} ({origin} token)",
            chosen,
        )
    refusal = _policy_refusal(token, policy)
    if refusal is not None:
        return answer(Answer.DENIED, refusal[0], refusal[1], chosen)
    if expired is None:
        return answer(
            Answer.ALLOWED,
            "verified",
            f"VERIFIED under policy {token.policy!r} until {token.expires_at_unix_s} "
            f"({origin} token)",
            chosen,
        )
    if policy.mode is GateMode.FAIL_CLOSED:
        return answer(Answer.DENIED, "token-expired", f"fail-closed: {expired}", chosen)
    if fetched.status is SourceStatus.NO_VERDICT:
        return answer(
            Answer.DENIED,
            "no-verdict",
            f"fail-open grace does not apply: the verifier has no verdict ({fetched.detail})",
            chosen,
        )
    grace_end = token.expires_at_unix_s + policy.grace_s
    if now_unix_s < grace_end:
        return answer(
            Answer.ALLOWED,
            "grace",
            f"fail-open: last VERIFIED token expired {now_unix_s - token.expires_at_unix_s:.0f} s "
            f"ago, grace runs {grace_end - now_unix_s:.0f} s more",
            chosen,
        )
    return answer(
        Answer.DENIED,
        "grace-exhausted",
        f"fail-open: last VERIFIED token expired {now_unix_s - token.expires_at_unix_s:.0f} s ago, "
        f"beyond the {policy.grace_s:.0f} s grace",
        chosen,
    )


def _policy_refusal(token: VerdictToken, policy: GatePolicy) -> tuple[str, str] | None:
    """(reason, one sentence) when the token's policy falls short of the operator's, else None.

    `locates-key` when only what the verdict locates falls short, `wrong-policy` otherwise."""
    need = policy.required_spec
    if need is not None:
        have = token.policy_spec
        if have is None:
            return (
                "wrong-policy",
                f"token policy {token.policy!r} cannot be read as a policy, the operator "
                f"requires {need.canonical_text()}",
            )
        missing = shortfalls(have, need)
    elif token.locates.rank < policy.required_locates.rank:
        missing = {
            "locates": f"the verdict locates the {token.locates.value}, the operator requires "
            f"one that locates the {policy.required_locates.value} (GPU-signed rounds)"
        }
    else:
        return None
    if not missing:
        return None
    reason = "locates-key" if set(missing) == {"locates"} else "wrong-policy"
    return reason, "; ".join(missing.values())
