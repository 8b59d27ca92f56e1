"""Re-check a gate's decision log with the verifier's public key alone (the auditor's side).

For every `allowed` entry the token it rested on must be authentic (signed by a trusted
verifier key), for the logged device, say VERIFIED, locate what the logged `required_locates`
says, satisfy the logged `required_policy` (when the gate required one;
model.policy.satisfies), and cover the logged decision time: from issue (less the logged
clock-skew allowance) to expiry (plus the logged fail-open grace). An entry that fails is a
decision the verifier never backed. Pure: entries in, findings out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightfence.core.kinds import VerdictKind
from lightfence.gate.token import DEFAULT_MAX_CLOCK_SKEW_S, TokenError, authenticate_token
from lightfence.model.policy import PolicyError, parse_policy_spec, shortfalls
from lightfence.model.trust import Locates


@dataclass
class AuditReport:
    entries: int = 0
    allowed: int = 0
    backed: int = 0
    """Allowed entries whose token checks out."""
    findings: list[dict[str, Any]] = field(default_factory=list)
    """One per allowed entry that is not backed: line number, device, what is wrong."""

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "allowed": self.allowed,
            "backed": self.backed,
            "clean": self.clean,
            "findings": self.findings,
        }


def _problem(entry: Mapping[str, Any], keys: list[bytes]) -> str | None:
    text, device = entry.get("token"), entry.get("device_id")
    at, grace = entry.get("decided_at_unix_s"), entry.get("grace_s") or 0.0
    skew = entry.get("max_clock_skew_s", DEFAULT_MAX_CLOCK_SKEW_S)
    if not isinstance(text, str) or not isinstance(device, str):
        return "allowed without a token"
    if not all(isinstance(v, int | float) for v in (at, grace, skew)):
        return "decision time, grace or clock skew missing"
    assert isinstance(at, int | float) and isinstance(skew, int | float)
    try:
        token = authenticate_token(text, keys, device_id=device)
    except TokenError as exc:
        return f"{exc.reason}: {exc}"
    if token.verdict is not VerdictKind.VERIFIED:
        return f"token says {token.verdict.value}"
    try:
        locates = Locates(entry.get("required_locates") or Locates.KEY.value)
    except ValueError:
        return f"logged required_locates {entry.get('required_locates')!r} cannot be read"
    if token.locates.rank < locates.rank:
        return (
            f"the gate required a verdict that locates the {locates.value}, the token's "
            f"locates the {token.locates.value}"
        )
    required = entry.get("required_policy")
    if required is not None:
        try:
            need = parse_policy_spec(str(required))
        except PolicyError as exc:
            return f"logged required_policy cannot be read: {exc}"
        have = token.policy_spec
        if have is None:
            return f"token policy {token.policy!r} cannot be read; the gate required {need}"
        missing = shortfalls(have, need)
        if missing:
            return "; ".join(missing.values())
    if at < token.issued_at_unix_s - skew:
        return f"decided at {at:.0f}, before the token was issued ({token.issued_at_unix_s})"
    if at >= token.expires_at_unix_s + grace:
        return (
            f"decided at {at:.0f}, after expiry {token.expires_at_unix_s} plus grace {grace:.0f} s"
        )
    return None


def audit_log(
    entries: Iterable[Mapping[str, Any]], verifier_public_keys: list[bytes]
) -> AuditReport:
    """Check every `allowed` entry of a decision log (entries oldest first)."""
    report = AuditReport()
    for line, entry in enumerate(entries, 1):
        report.entries += 1
        if entry.get("answer") != "allowed":
            continue
        report.allowed += 1
        problem = _problem(entry, verifier_public_keys)
        if problem is None:
            report.backed += 1
        else:
            report.findings.append(
                {"line": line, "device_id": entry.get("device_id"), "problem": problem}
            )
    return report
