"""The decision rules of lightfence.gate.decision, each giving its documented answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.gate.decision import (
    Answer,
    Decision,
    Fetched,
    GateMode,
    GatePolicy,
    SourceStatus,
    decide,
)
from lightfence.gate.token import issue_token
from lightfence.model.policy import parse_policy_spec
from lightfence.model.trust import Locates

VERIFIER = SigningKey.from_seed(bytes(range(32)))
ATTACKER = SigningKey.from_seed(bytes(32))
DEVICE = "0123456789abcdef0123456789abcdef"
T0 = 1_800_000_000.0
TTL_S = 300
CLOSED = GatePolicy()
OPEN_1H = GatePolicy(mode=GateMode.FAIL_OPEN, grace_s=3600)


def tok(
    verdict: VerdictKind = VerdictKind.VERIFIED,
    *,
    at: float = T0,
    key: SigningKey = VERIFIER,
    device: str = DEVICE,
    policy: str = "outside:CN,HK,MO",
) -> str:
    return issue_token(
        device_id=device,
        verdict=verdict,
        policy=policy,
        signing_key=key,
        now_unix_s=at,
        ttl_s=TTL_S,
    ).to_text()


def fresh(text: str) -> Fetched:
    return Fetched(SourceStatus.TOKEN, "verifier:http://v", token_text=text)


DOWN = Fetched(SourceStatus.UNAVAILABLE, "verifier:http://v", detail="ConnectError")
NO_VERDICT = Fetched(SourceStatus.NO_VERDICT, "verifier:http://v", detail="HTTP 404")


def run(
    fetched: Fetched, now: float, policy: GatePolicy = CLOSED, cached: str | None = None
) -> Decision:
    return decide(
        DEVICE,
        fetched,
        cached_text=cached,
        verifier_public_keys=[VERIFIER.public_bytes],
        policy=policy,
        now_unix_s=now,
    )


def test_valid_verified_token_allows_with_exit_0() -> None:
    d = run(fresh(tok()), T0 + 5)
    assert (d.answer, d.reason, d.exit_code) == (Answer.ALLOWED, "verified", 0)
    assert d.to_json_dict()["verdict"] == "VERIFIED"


@pytest.mark.parametrize("verdict", [v for v in VerdictKind if v is not VerdictKind.VERIFIED])
@pytest.mark.parametrize("policy", [CLOSED, OPEN_1H])
def test_every_other_verdict_denies_with_exit_1(verdict: VerdictKind, policy: GatePolicy) -> None:
    d = run(fresh(tok(verdict)), T0 + 5, policy)
    assert (d.answer, d.reason, d.exit_code) == (
        Answer.DENIED,
        f"verdict-{verdict.value.lower()}",
        1,
    )


@pytest.mark.parametrize("policy", [CLOSED, OPEN_1H])
def test_forged_and_foreign_tokens_deny_even_with_a_good_cache(policy: GatePolicy) -> None:
    good = tok()
    cases = {
        "token-unknown-key": tok(key=ATTACKER),
        "token-wrong-device": tok(device="f" * 32),
        "token-malformed": "lf1.garbage",
        "token-forged": good[:-2] + ("AA" if not good.endswith("AA") else "BA"),
    }
    for reason, text in cases.items():
        d = run(fresh(text), T0 + 5, policy, cached=good)
        assert (d.answer, d.reason) == (Answer.DENIED, reason), text


def test_verdict_flipping_to_refuted_denies_at_once_despite_cached_verified() -> None:
    cached = tok(VerdictKind.VERIFIED, at=T0)
    d = run(fresh(tok(VerdictKind.REFUTED, at=T0 + 60)), T0 + 61, OPEN_1H, cached=cached)
    assert (d.answer, d.reason) == (Answer.DENIED, "verdict-refuted")
    assert d.token_text is not None and d.token is not None
    assert d.token.verdict is VerdictKind.REFUTED  # the client caches this one


def test_replayed_older_verified_token_cannot_mask_a_cached_refuted() -> None:
    cached = tok(VerdictKind.REFUTED, at=T0 + 60)
    d = run(fresh(tok(VerdictKind.VERIFIED, at=T0)), T0 + 61, OPEN_1H, cached=cached)
    assert (d.answer, d.reason) == (Answer.DENIED, "verdict-refuted")


def test_verifier_down_with_unexpired_cached_token_allows() -> None:
    d = run(DOWN, T0 + 100, CLOSED, cached=tok())
    assert (d.answer, d.reason) == (Answer.ALLOWED, "verified")


def test_verifier_down_without_any_token_denies_in_both_modes() -> None:
    for policy in (CLOSED, OPEN_1H):
        d = run(DOWN, T0, policy)
        assert (d.answer, d.reason) == (Answer.DENIED, "no-token")


def test_fail_closed_denies_an_expired_token() -> None:
    d = run(DOWN, T0 + TTL_S, CLOSED, cached=tok())
    assert (d.answer, d.reason) == (Answer.DENIED, "token-expired")
    d = run(fresh(tok()), T0 + TTL_S + 1, CLOSED)
    assert (d.answer, d.reason) == (Answer.DENIED, "token-expired")


def test_fail_open_grace_allows_until_grace_ends_then_denies() -> None:
    cached = tok()
    inside = run(DOWN, T0 + TTL_S + 3599, OPEN_1H, cached=cached)
    assert (inside.answer, inside.reason, inside.exit_code) == (Answer.ALLOWED, "grace", 0)
    after = run(DOWN, T0 + TTL_S + 3600, OPEN_1H, cached=cached)
    assert (after.answer, after.reason) == (Answer.DENIED, "grace-exhausted")


def test_fail_open_grace_does_not_cover_a_verifier_that_says_no_verdict() -> None:
    d = run(NO_VERDICT, T0 + TTL_S + 10, OPEN_1H, cached=tok())
    assert (d.answer, d.reason) == (Answer.DENIED, "no-verdict")
    d = run(NO_VERDICT, T0, OPEN_1H)
    assert (d.answer, d.reason) == (Answer.DENIED, "no-verdict")


def test_fail_open_grace_never_rescues_a_negative_verdict() -> None:
    d = run(DOWN, T0 + TTL_S + 10, OPEN_1H, cached=tok(VerdictKind.UNVERIFIED))
    assert (d.answer, d.reason) == (Answer.DENIED, "verdict-unverified")


def test_token_from_the_future_beyond_skew_denies() -> None:
    d = run(fresh(tok(at=T0 + 600)), T0, GatePolicy(max_clock_skew_s=60))
    assert (d.answer, d.reason) == (Answer.DENIED, "token-not-yet-valid")
    d = run(fresh(tok(at=T0 + 30)), T0, GatePolicy(max_clock_skew_s=60))
    assert d.answer is Answer.ALLOWED


def test_expected_policy_mismatch_denies() -> None:
    need = parse_policy_spec("outside:CN,HK,MO")
    d = run(fresh(tok(policy="anywhere")), T0, GatePolicy(expected_policy=need))
    assert (d.answer, d.reason) == (Answer.DENIED, "wrong-policy")
    assert "cannot be read as a policy" in d.detail


def need(text: str, bound: str | None = None, liars: str | None = None) -> GatePolicy:
    return GatePolicy(expected_policy=parse_policy_spec(text, bound, liars, absent_liars=0))


def test_legacy_token_text_satisfies_its_region() -> None:
    """Issue 18: `gate check --policy in:DE` denied a VERIFIED token reading
    `in:DE (bound: vacuum)`, the text verifiers have issued."""
    legacy = tok(policy="in:DE (bound: vacuum)")
    assert run(fresh(legacy), T0, need("in:DE")).answer is Answer.ALLOWED
    assert run(fresh(legacy), T0, need("in:de", bound="fibre")).answer is Answer.ALLOWED
    # It states no liars: read as none tolerated, so a requirement of one denies.
    d = run(fresh(legacy), T0, need("in:DE", liars="1"))
    assert (d.answer, d.reason) == (Answer.DENIED, "wrong-policy")
    assert d.detail == "token tolerates 0 lying landmarks, the operator requires 1"


def test_structured_policy_comparison() -> None:
    token = tok(policy="outside:CN,HK,MO (bound: vacuum, liars: 1)")
    for allowed in ("outside:MO,HK,CN", "outside: cn, hk", "outside:CN (bound: fibre, liars: 1)"):
        d = run(fresh(token), T0, need(allowed))
        assert d.answer is Answer.ALLOWED, (allowed, d.detail)
        assert (
            d.to_json_dict()["required_policy"]
            == parse_policy_spec(allowed, absent_liars=0).canonical_text()
        )
    for denied, detail in (
        ("outside:CN,HK,MO,RU", "token region outside:CN,HK,MO does not exclude RU"),
        (
            "outside:CN,HK,MO (liars: 2)",
            "token tolerates 1 lying landmark, the operator requires 2",
        ),
        ("in:DE", "token region is outside:CN,HK,MO, the operator requires in:DE"),
    ):
        d = run(fresh(token), T0, need(denied))
        assert (d.answer, d.reason) == (Answer.DENIED, "wrong-policy"), denied
        assert d.detail.startswith(detail), d.detail
    fibre = tok(policy="outside:CN,HK,MO (bound: fibre, liars: 1)")
    d = run(fresh(fibre), T0, need("outside:CN,HK,MO"))
    assert d.detail == "token bound is fibre, the operator requires vacuum"


def test_locates_in_the_required_policy() -> None:
    d = run(fresh(tok()), T0, need("outside:CN,HK,MO (locates: gpu)"))
    assert (d.answer, d.reason) == (Answer.DENIED, "locates-key")
    gpu = issue_token(
        device_id=DEVICE,
        verdict=VerdictKind.VERIFIED,
        policy="outside:CN,HK,MO (bound: vacuum, liars: 0)",
        signing_key=VERIFIER,
        now_unix_s=T0,
        ttl_s=TTL_S,
        locates=Locates.GPU,
    ).to_text()
    d = run(fresh(gpu), T0, need("outside:CN,HK,MO (locates: gpu)"))
    assert d.answer is Answer.ALLOWED, d.detail
    # --require gpu given beside the policy is folded into it, and logged so.
    both = GatePolicy(
        expected_policy=parse_policy_spec("outside:CN", liars="0"), required_locates=Locates.GPU
    )
    d = run(fresh(tok()), T0, both)
    assert (d.answer, d.reason) == (Answer.DENIED, "locates-key")
    assert (
        d.to_json_dict()["required_policy"] == "outside:CN (bound: vacuum, liars: 0, locates: gpu)"
    )
    # Two shortfalls: one sentence names both, and the reason is the policy's.
    d = run(fresh(tok()), T0, need("outside:CN,HK,MO,RU (locates: gpu)"))
    assert d.reason == "wrong-policy"
    assert "does not exclude RU" in d.detail and "locates the key" in d.detail


def test_damaged_cache_is_ignored_not_fatal() -> None:
    d = run(fresh(tok()), T0 + 1, CLOSED, cached="not a token")
    assert d.answer is Answer.ALLOWED


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="fail-open"):
        GatePolicy(grace_s=10)
    with pytest.raises(ValueError):
        GatePolicy(mode=GateMode.FAIL_OPEN, grace_s=-1)


VERDICTS = st.sampled_from(list(VerdictKind))


@given(
    verdict=VERDICTS,
    issued=st.integers(-10_000, 10_000),
    now=st.integers(-10_000, 20_000),
    mode=st.sampled_from(list(GateMode)),
    grace=st.integers(0, 5000),
    down=st.booleans(),
)
def test_allowed_only_on_an_authentic_verified_token_within_expiry_or_grace(
    verdict: VerdictKind, issued: int, now: int, mode: GateMode, grace: int, down: bool
) -> None:
    policy = GatePolicy(mode=mode, grace_s=grace if mode is GateMode.FAIL_OPEN else 0)
    text = tok(verdict, at=T0 + issued)
    d = run(DOWN, T0 + now, policy, cached=text) if down else run(fresh(text), T0 + now, policy)
    if d.answer is Answer.ALLOWED:
        assert verdict is VerdictKind.VERIFIED
        assert T0 + issued <= T0 + now + policy.max_clock_skew_s
        assert T0 + now < T0 + issued + TTL_S + policy.grace_s
        if mode is GateMode.FAIL_CLOSED:
            assert T0 + now < T0 + issued + TTL_S
