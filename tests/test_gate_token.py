from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.gate.issuer import token_for_latest_verdict, token_response
from lightfence.gate.token import (
    MAX_TOKEN_TTL_S,
    TokenError,
    TokenExpired,
    TokenForged,
    TokenMalformed,
    TokenNotYetValid,
    TokenUnknownKey,
    TokenWrongDevice,
    issue_token,
    parse_token,
    verify_token,
)
from lightfence.model.policy import parse_policy_spec

VERIFIER = SigningKey.from_seed(bytes(range(32)))
OTHER = SigningKey.from_seed(bytes(32))
DEVICE = "0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0


def make(verdict: VerdictKind = VerdictKind.VERIFIED, *, key: SigningKey = VERIFIER) -> str:
    return issue_token(
        device_id=DEVICE,
        verdict=verdict,
        policy="outside:CN,HK,MO",
        signing_key=key,
        now_unix_s=NOW,
        ttl_s=300,
    ).to_text()


def check(text: str, now: float = NOW + 10, skew: float = 60) -> VerdictKind:
    return verify_token(
        text, VERIFIER.public_bytes, device_id=DEVICE, now_unix_s=now, max_clock_skew_s=skew
    ).verdict


def test_round_trip_and_fields() -> None:
    text = make()
    assert text.startswith("lf1.") and len(text) < 400
    token = verify_token(text, VERIFIER.public_bytes, device_id=DEVICE, now_unix_s=NOW + 1)
    assert token.verdict is VerdictKind.VERIFIED
    assert token.issued_at_unix_s == int(NOW) and token.expires_at_unix_s == int(NOW) + 300
    assert token.verifier_key_id == VERIFIER.key_id
    assert token.to_text() == text


def test_a_valid_token_may_say_refuted() -> None:
    assert check(make(VerdictKind.REFUTED)) is VerdictKind.REFUTED


def test_token_signed_by_another_key_is_unknown_key() -> None:
    with pytest.raises(TokenUnknownKey):
        check(make(key=OTHER))


def test_payload_edited_to_verified_is_forged() -> None:
    prefix, payload, sig = make(VerdictKind.REFUTED).split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields["verdict"] = "VERIFIED"
    raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    edited = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    with pytest.raises(TokenForged):
        check(f"{prefix}.{edited}.{sig}")


def test_signature_of_another_token_is_forged() -> None:
    _, _, sig = make(VerdictKind.VERIFIED).split(".")
    prefix, payload, _ = make(VerdictKind.REFUTED).split(".")
    with pytest.raises(TokenForged):
        check(f"{prefix}.{payload}.{sig}")


@given(st.data())
def test_any_single_character_change_is_refused(data: st.DataObject) -> None:
    text = make()
    i = data.draw(st.integers(0, len(text) - 1))
    c = data.draw(st.sampled_from("AQgw_-.0x="))
    if text[i] == c:
        return
    with pytest.raises(TokenError):
        check(text[:i] + c + text[i + 1 :])


def test_other_device_is_refused() -> None:
    with pytest.raises(TokenWrongDevice):
        verify_token(make(), VERIFIER.public_bytes, device_id="f" * 32, now_unix_s=NOW)


def test_expiry_is_strict_and_never_stretched_by_skew() -> None:
    assert check(make(), now=NOW + 299) is VerdictKind.VERIFIED
    with pytest.raises(TokenExpired) as exc:
        check(make(), now=NOW + 300, skew=3600)
    assert exc.value.token.verdict is VerdictKind.VERIFIED


def test_clock_skew_excuses_a_slightly_future_issued_at_only() -> None:
    assert check(make(), now=NOW - 59, skew=60) is VerdictKind.VERIFIED
    with pytest.raises(TokenNotYetValid):
        check(make(), now=NOW - 61, skew=60)
    with pytest.raises(TokenNotYetValid):
        check(make(), now=NOW - 1, skew=0)


@pytest.mark.parametrize(
    "text",
    ["", "lf1", "lf1..", "lf2.AAAA.AAAA", "lf1.!!!!.AAAA", "x" * 5000, "lf1.e30.AAAA"],
)
def test_garbage_is_malformed(text: str) -> None:
    with pytest.raises(TokenMalformed):
        check(text)


def test_non_canonical_payload_is_malformed_even_if_signed() -> None:
    token = issue_token(
        device_id=DEVICE,
        verdict=VerdictKind.VERIFIED,
        policy="p",
        signing_key=VERIFIER,
        now_unix_s=NOW,
        ttl_s=60,
    )
    spaced = json.dumps(token.payload(), sort_keys=True).encode()  # spaces: not canonical
    sig = VERIFIER.sign(b"lightfence/gate-token/v1\x00" + spaced)
    b64 = base64.urlsafe_b64encode
    text = f"lf1.{b64(spaced).rstrip(b'=').decode()}.{b64(sig).rstrip(b'=').decode()}"
    with pytest.raises(TokenMalformed, match="canonical"):
        check(text)


def test_lifetime_is_capped() -> None:
    with pytest.raises(TokenMalformed):
        issue_token(
            device_id=DEVICE,
            verdict=VerdictKind.VERIFIED,
            policy="p",
            signing_key=VERIFIER,
            now_unix_s=NOW,
            ttl_s=MAX_TOKEN_TTL_S + 1,
        )


def test_rotation_accepts_any_trusted_key() -> None:
    keys = [OTHER.public_bytes, VERIFIER.public_bytes]
    assert verify_token(make(), keys, device_id=DEVICE, now_unix_s=NOW).verdict is (
        VerdictKind.VERIFIED
    )


IN_DE = parse_policy_spec("in:DE", liars=1)


def test_issuer_downgrades_a_stale_verified_verdict() -> None:
    fresh = token_for_latest_verdict(
        DEVICE, VerdictKind.VERIFIED, IN_DE, VERIFIER, NOW, 300, verdict_at_unix_s=NOW - 60
    )
    stale = token_for_latest_verdict(
        DEVICE, VerdictKind.VERIFIED, IN_DE, VERIFIER, NOW, 300, verdict_at_unix_s=NOW - 7200
    )
    refuted = token_for_latest_verdict(
        DEVICE, VerdictKind.REFUTED, IN_DE, VERIFIER, NOW, 300, verdict_at_unix_s=NOW - 7200
    )
    assert check(fresh) is VerdictKind.VERIFIED
    assert check(stale) is VerdictKind.UNVERIFIED
    assert check(refuted) is VerdictKind.REFUTED
    body = token_response(fresh)
    assert body["token"] == fresh and body["verdict"] == "VERIFIED"
    assert parse_token(body["token"])[0].device_id == DEVICE
    assert body["policy"] == "in:DE (bound: vacuum, liars: 1)"
    assert body["policy_spec"] == IN_DE.to_json_dict()
