"""Tokens say what their verdict locates; a gate can require a verdict that locates the GPU."""

from __future__ import annotations

import base64
import json

import pytest

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.gate.decision import Fetched, GatePolicy, SourceStatus, decide
from lightfence.gate.token import TokenMalformed, issue_token, parse_token, verify_token
from lightfence.model.trust import Locates

VERIFIER = SigningKey.from_seed(bytes(range(32)))
DEVICE = "0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0


def _text(locates: Locates) -> str:
    return issue_token(
        device_id=DEVICE,
        verdict=VerdictKind.VERIFIED,
        policy="outside:CN",
        signing_key=VERIFIER,
        now_unix_s=NOW,
        ttl_s=300,
        locates=locates,
    ).to_text()


def test_locates_round_trips_and_old_tokens_read_as_key() -> None:
    gpu = verify_token(_text(Locates.GPU), VERIFIER.public_bytes, device_id=DEVICE, now_unix_s=NOW)
    assert gpu.locates is Locates.GPU and gpu.payload()["locates"] == "gpu"
    key = verify_token(_text(Locates.KEY), VERIFIER.public_bytes, device_id=DEVICE, now_unix_s=NOW)
    assert key.locates is Locates.KEY and "locates" not in key.payload()


def test_explicit_key_or_unknown_locates_is_not_canonical() -> None:
    token, payload = parse_token(_text(Locates.KEY))
    for value in ("key", "chip", 3):
        fields = json.loads(payload) | {"locates": value}
        raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        b64 = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        sig = base64.urlsafe_b64encode(token.signature).rstrip(b"=").decode()
        with pytest.raises(TokenMalformed):
            parse_token(f"lf1.{b64}.{sig}")


def test_gate_requiring_gpu_denies_a_key_verdict() -> None:
    def run(locates: Locates, required: Locates) -> str:
        d = decide(
            DEVICE,
            Fetched(SourceStatus.TOKEN, "file:t", _text(locates)),
            cached_text=None,
            verifier_public_keys=VERIFIER.public_bytes,
            policy=GatePolicy(required_locates=required),
            now_unix_s=NOW + 1,
        )
        assert d.to_json_dict()["locates"] == locates.value
        return d.reason

    assert run(Locates.KEY, Locates.GPU) == "locates-key"
    assert run(Locates.GPU, Locates.GPU) == "verified"
    assert run(Locates.KEY, Locates.KEY) == "verified"
    assert run(Locates.GPU, Locates.KEY) == "verified"
