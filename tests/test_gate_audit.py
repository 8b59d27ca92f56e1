from __future__ import annotations

from typing import Any

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.gate.audit import audit_log
from lightfence.gate.decision import Fetched, GateMode, GatePolicy, SourceStatus, decide
from lightfence.gate.token import issue_token

VERIFIER = SigningKey.from_seed(bytes(range(32)))
DEVICE = "0123456789abcdef0123456789abcdef"
T0 = 1_800_000_000.0


def entry(now: float, policy: GatePolicy, cached_at: float = T0) -> dict[str, Any]:
    text = issue_token(
        device_id=DEVICE,
        verdict=VerdictKind.VERIFIED,
        policy="p",
        signing_key=VERIFIER,
        now_unix_s=cached_at,
        ttl_s=300,
    ).to_text()
    down = Fetched(SourceStatus.UNAVAILABLE, "verifier:http://v", detail="down")
    d = decide(
        DEVICE,
        down,
        cached_text=text,
        verifier_public_keys=[VERIFIER.public_bytes],
        policy=policy,
        now_unix_s=now,
    )
    return d.to_json_dict()


def test_genuine_allowed_entries_including_grace_are_backed() -> None:
    grace = GatePolicy(mode=GateMode.FAIL_OPEN, grace_s=600)
    entries = [entry(T0 + 10, GatePolicy()), entry(T0 + 800, grace), entry(T0 + 1000, grace)]
    assert [e["answer"] for e in entries] == ["allowed", "allowed", "denied"]
    report = audit_log(entries, [VERIFIER.public_bytes])
    assert (report.entries, report.allowed, report.backed, report.clean) == (3, 2, 2, True)


def test_invented_or_stretched_entries_are_found() -> None:
    good = entry(T0 + 10, GatePolicy())
    late = good | {"decided_at_unix_s": T0 + 5000}
    no_token = good | {"token": None}
    other_key = good | {"token": good["token"][:-3] + "AAA"}
    report = audit_log([good, late, no_token, other_key], [VERIFIER.public_bytes])
    problems = [f["problem"] for f in report.findings]
    assert report.backed == 1 and len(problems) == 3
    assert "after expiry" in problems[0]
    assert "without a token" in problems[1]
    assert problems[2].startswith(("token-forged", "token-malformed"))
