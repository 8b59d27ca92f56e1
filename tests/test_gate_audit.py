from __future__ import annotations

from typing import Any

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.gate.audit import audit_log
from lightfence.gate.decision import Fetched, GateMode, GatePolicy, SourceStatus, decide
from lightfence.gate.token import issue_token
from lightfence.model.policy import parse_policy_spec
from lightfence.model.trust import Locates

VERIFIER = SigningKey.from_seed(bytes(range(32)))
DEVICE = "0123456789abcdef0123456789abcdef"
T0 = 1_800_000_000.0


def entry(
    now: float, policy: GatePolicy, cached_at: float = T0, *, token_policy: str = "p"
) -> dict[str, Any]:
    text = issue_token(
        device_id=DEVICE,
        verdict=VerdictKind.VERIFIED,
        policy=token_policy,
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


def test_an_allowed_entry_must_satisfy_its_logged_requirement() -> None:
    need = parse_policy_spec("outside:CN,HK,MO", liars=1)
    good = entry(T0 + 10, GatePolicy(), token_policy="outside:CN,HK,MO (bound: vacuum, liars: 1)")
    good_required = good | {"required_policy": need.canonical_text()}
    stronger = good | {"required_policy": "outside:CN,HK,MO (bound: vacuum, liars: 2)"}
    unreadable = good | {"required_policy": "nowhere"}
    legacy = entry(T0 + 10, GatePolicy()) | {"required_policy": "outside:CN"}
    report = audit_log([good_required, stronger, unreadable, legacy], [VERIFIER.public_bytes])
    problems = [f["problem"] for f in report.findings]
    assert report.backed == 1 and len(problems) == 3
    assert problems[0] == "token tolerates 1 lying landmark, the operator requires 2"
    assert "cannot be read" in problems[1] and "cannot be read" in problems[2]


def test_an_allowed_entry_must_locate_what_the_gate_required() -> None:
    # `gate check --require gpu` without --policy logged nothing the audit could re-apply: a
    # decision log edited to allow a key token passed the audit as backed.
    gpu_gate = GatePolicy(required_locates=Locates.GPU)
    denied = entry(T0 + 10, gpu_gate)
    assert denied["answer"] == "denied" and denied["required_locates"] == "gpu"
    forged = denied | {"answer": "allowed"}
    report = audit_log([forged], [VERIFIER.public_bytes])
    assert report.backed == 0 and "locates the gpu" in report.findings[0]["problem"]
    unreadable = entry(T0 + 10, GatePolicy()) | {"required_locates": "soul"}
    assert not audit_log([unreadable], [VERIFIER.public_bytes]).clean
    assert entry(T0 + 10, GatePolicy())["required_locates"] == "key"
