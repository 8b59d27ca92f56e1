"""Verdict tokens: a short-lived statement by the verifier that device D had verdict V.

A token says: the verifier holding key `verifier_key_id` found, for device `device_id` under
policy `policy`, the verdict `verdict`; the statement holds from `issued_at_unix_s` until
`expires_at_unix_s`. The gate on an operator's host checks it offline against the verifier's
public key, so the gate needs no trust in the network or in the host that carried the token.

Compact text form, for files and HTTP bodies (ASCII, no padding, about 350 characters):

    lf1.<base64url(payload)>.<base64url(signature)>

`payload` is canonical JSON (sorted keys, no spaces, ASCII only) of the seven fields; the
signature is Ed25519 by the verifier's key over TOKEN_DOMAIN + payload. A payload that is not in
canonical form is rejected, so one token has exactly one text.

Pure: no clock, no I/O. The time is always passed in (`now_unix_s`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import (
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    SigningKey,
    key_id,
    verify_signature,
)
from lightfence.model.canonical import canonical_json
from lightfence.model.policy import MAX_POLICY_CHARS as MAX_POLICY_CHARS
from lightfence.model.policy import PolicyError, PolicySpec, parse_policy_spec
from lightfence.model.trust import Locates
from lightfence.protocol.challenge import id_bytes

TOKEN_VERSION = 1
TOKEN_PREFIX = "lf1"
"""First part of the compact form; changes with TOKEN_VERSION."""
TOKEN_DOMAIN = b"lightfence/gate-token/v1\x00"
"""Prefix of the signed bytes, so a token signature can never be replayed as another message."""
MAX_TOKEN_CHARS = 2048
"""Longest compact token accepted; a real one is about 350 characters."""
MAX_TOKEN_TTL_S = 24 * 3600
"""Longest lifetime a token may claim. Tokens are meant to live minutes; a day is a hard cap."""
DEFAULT_MAX_CLOCK_SKEW_S = 60.0
"""How far in the future a token's issued-at may lie before it is refused (clocks differ)."""

_FIELDS = frozenset(
    {
        "version",
        "device_id",
        "verdict",
        "policy",
        "issued_at_unix_s",
        "expires_at_unix_s",
        "verifier_key_id",
    }
)
_OPTIONAL_FIELDS = frozenset({"locates"})
"""`locates` is present only when it is `gpu` (docs/trust.md); absent means `key`, so tokens
issued before it existed still read, and each token still has exactly one canonical payload."""


class TokenError(ValueError):
    """A token was refused. `reason` is a stable code for logs and JSON output."""

    reason = "token-invalid"


class TokenMalformed(TokenError):
    """Not a token of a version this gate reads: bad encoding, fields or field values."""

    reason = "token-malformed"


class TokenUnknownKey(TokenError):
    """Signed, or claiming to be signed, by a key the gate does not trust."""

    reason = "token-unknown-key"


class TokenForged(TokenError):
    """The signature does not match the payload under the trusted key it names."""

    reason = "token-forged"


class TokenWrongDevice(TokenError):
    """An authentic token, but for another device."""

    reason = "token-wrong-device"


class TokenNotYetValid(TokenError):
    """An authentic token whose issued-at lies further in the future than the allowed skew."""

    reason = "token-not-yet-valid"


class TokenExpired(TokenError):
    """An authentic token past its expiry. `token` is kept: a fail-open gate may use its grace."""

    reason = "token-expired"

    def __init__(self, message: str, token: VerdictToken) -> None:
        super().__init__(message)
        self.token = token


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise TokenMalformed(f"{name} must be a non-negative integer, got {value!r}")
    return value


@dataclass(frozen=True)
class VerdictToken:
    """One signed verdict statement. Validated at construction; build with `issue_token`."""

    device_id: str
    """The device's id (32 lowercase hex digits, crypto.identity.compute_device_id)."""
    verdict: VerdictKind
    """The verifier's latest verdict for the device."""
    policy: str
    """The policy the verdict was computed under, as text: the canonical text of its
    model.policy.PolicySpec without locates, e.g. `outside:CN,HK,MO (bound: vacuum, liars: 1)`.
    Compare `policy_spec`, never this text."""
    issued_at_unix_s: int
    """Verifier's UTC clock when it signed, whole seconds since the epoch."""
    expires_at_unix_s: int
    """First second at which the token no longer holds."""
    verifier_key_id: str
    """Key id (crypto.keys.key_id) of the verifier key that signed."""
    signature: bytes = b""
    """Ed25519 signature over `signed_bytes()`; empty only before signing."""
    locates: Locates = Locates.KEY
    """What the verdict locates: the device key, or the GPU itself (GPU-signed rounds)."""
    version: int = TOKEN_VERSION

    def __post_init__(self) -> None:
        if self.version != TOKEN_VERSION:
            raise TokenMalformed(f"unsupported token version {self.version!r}")
        for name in ("device_id", "verifier_key_id"):
            try:
                id_bytes(getattr(self, name))
            except (ValueError, TypeError):
                raise TokenMalformed(f"{name} must be 32 lowercase hex digits") from None
        if not isinstance(self.verdict, VerdictKind):
            raise TokenMalformed(f"verdict must be a VerdictKind, got {self.verdict!r}")
        if not isinstance(self.policy, str) or not 1 <= len(self.policy) <= MAX_POLICY_CHARS:
            raise TokenMalformed(f"policy must be 1 to {MAX_POLICY_CHARS} characters")
        iat = _check_int("issued_at_unix_s", self.issued_at_unix_s)
        exp = _check_int("expires_at_unix_s", self.expires_at_unix_s)
        if not iat < exp <= iat + MAX_TOKEN_TTL_S:
            raise TokenMalformed(
                f"a token must expire after it is issued and within {MAX_TOKEN_TTL_S} s "
                f"(issued {iat}, expires {exp})"
            )
        if len(self.signature) not in (0, SIGNATURE_LEN):
            raise TokenMalformed(f"signature must be {SIGNATURE_LEN} bytes")

    @property
    def policy_spec(self) -> PolicySpec | None:
        """The policy as a structure, or None if its text cannot be read.

        Tokens from verifiers before the structure read `in:DE (bound: vacuum)`: they state no
        liars, which counts as 0 tolerated (conservative). What the verdict locates is this
        token's `locates` field, whatever the text says.
        """
        try:
            spec = parse_policy_spec(self.policy, absent_liars=0)
        except PolicyError:
            return None
        return replace(spec, locates=self.locates)

    def payload(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "device_id": self.device_id,
            "verdict": self.verdict.value,
            "policy": self.policy,
            "issued_at_unix_s": self.issued_at_unix_s,
            "expires_at_unix_s": self.expires_at_unix_s,
            "verifier_key_id": self.verifier_key_id,
        } | ({"locates": self.locates.value} if self.locates is Locates.GPU else {})

    def payload_bytes(self) -> bytes:
        """Canonical JSON of the payload: the one byte string this token can be encoded as."""
        return canonical_json(self.payload()).encode()

    def signed_bytes(self) -> bytes:
        """What the verifier signs: domain separator, then the canonical payload."""
        return TOKEN_DOMAIN + self.payload_bytes()

    def to_text(self) -> str:
        """The compact form `lf1.<payload>.<signature>`; the token must be signed."""
        if not self.signature:
            raise ValueError("an unsigned token has no text form; sign it with issue_token")
        return f"{TOKEN_PREFIX}.{_b64(self.payload_bytes())}.{_b64(self.signature)}"

    def to_json_dict(self) -> dict[str, Any]:
        """Readable fields for logs and CLI output (not a second wire format)."""
        return {**self.payload(), "signature": self.signature.hex()}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise TokenMalformed(f"token {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenMalformed(f"token {what} is not base64url") from None
    if _b64(raw) != text:
        raise TokenMalformed(f"token {what} is not in canonical base64url")
    return raw


def issue_token(
    *,
    device_id: str,
    verdict: VerdictKind,
    policy: str,
    signing_key: SigningKey,
    now_unix_s: float,
    ttl_s: float,
    locates: Locates = Locates.KEY,
) -> VerdictToken:
    """Sign a token valid from `now_unix_s` (rounded down) for `ttl_s` seconds (rounded up)."""
    if not math.isfinite(now_unix_s) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"now and ttl must be finite and ttl positive, got {now_unix_s}, {ttl_s}")
    iat = math.floor(now_unix_s)
    unsigned = VerdictToken(
        device_id=device_id,
        verdict=VerdictKind(verdict),
        policy=policy,
        issued_at_unix_s=iat,
        expires_at_unix_s=iat + math.ceil(ttl_s),
        verifier_key_id=signing_key.key_id,
        locates=Locates(locates),
    )
    return replace(unsigned, signature=signing_key.sign(unsigned.signed_bytes()))


def _trusted_keys(keys: bytes | Iterable[bytes]) -> dict[str, bytes]:
    if isinstance(keys, bytes):
        keys = [keys]
    trusted = {}
    for k in keys:
        if len(k) != PUBLIC_KEY_LEN:
            raise ValueError(f"a verifier public key is {PUBLIC_KEY_LEN} bytes, got {len(k)}")
        trusted[key_id(k)] = k
    if not trusted:
        raise ValueError("at least one trusted verifier public key is needed")
    return trusted


def parse_token(text: str) -> tuple[VerdictToken, bytes]:
    """Decode the compact form WITHOUT checking the signature: (token, payload bytes).

    Only for `authenticate_token` and for display; never act on a token from here alone.
    """
    if not isinstance(text, str) or len(text) > MAX_TOKEN_CHARS:
        raise TokenMalformed(f"a token is a string of at most {MAX_TOKEN_CHARS} characters")
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise TokenMalformed(f"a token has the form {TOKEN_PREFIX}.<payload>.<signature>")
    payload = _unb64(parts[1], "payload")
    signature = _unb64(parts[2], "signature")
    try:
        fields = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raise TokenMalformed("token payload is not JSON") from None
    if not isinstance(fields, dict) or not _FIELDS <= set(fields) <= _FIELDS | _OPTIONAL_FIELDS:
        got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
        raise TokenMalformed(
            f"token payload must have exactly the fields {sorted(_FIELDS)} "
            f"(and optionally {sorted(_OPTIONAL_FIELDS)}): {got}"
        )
    if fields["version"] != TOKEN_VERSION:
        raise TokenMalformed(f"unsupported token version {fields['version']!r}")
    try:
        verdict = VerdictKind(fields["verdict"])
    except ValueError:
        raise TokenMalformed(f"unknown verdict {fields['verdict']!r}") from None
    token = VerdictToken(
        device_id=fields["device_id"],
        verdict=verdict,
        policy=fields["policy"],
        issued_at_unix_s=fields["issued_at_unix_s"],
        expires_at_unix_s=fields["expires_at_unix_s"],
        verifier_key_id=fields["verifier_key_id"],
        signature=signature,
        locates=_locates(fields.get("locates", Locates.KEY.value)),
    )
    if token.payload_bytes() != payload:
        raise TokenMalformed("token payload is not in canonical form")
    return token, payload


def _locates(value: object) -> Locates:
    try:
        return Locates(str(value)) if isinstance(value, str) else Locates(repr(value))
    except ValueError:
        raise TokenMalformed(f"unknown locates {value!r}") from None


def authenticate_token(
    text: str, verifier_public_keys: bytes | Iterable[bytes], *, device_id: str
) -> VerdictToken:
    """The token if it is well formed, signed by a trusted key and for `device_id`.

    Checks no time: see `check_validity`. Raises TokenMalformed, TokenUnknownKey, TokenForged
    or TokenWrongDevice. The key is looked up before the signature is checked, so a token that
    names an untrusted key is reported as such rather than as forged.
    """
    trusted = _trusted_keys(verifier_public_keys)
    token, payload = parse_token(text)
    public_key = trusted.get(token.verifier_key_id)
    if public_key is None:
        raise TokenUnknownKey(
            f"token is signed by verifier key {token.verifier_key_id}, which this gate does not "
            f"trust (trusted: {', '.join(sorted(trusted))})"
        )
    if not verify_signature(public_key, token.signature, TOKEN_DOMAIN + payload):
        raise TokenForged(
            f"token signature does not verify under verifier key {token.verifier_key_id}"
        )
    if token.device_id != device_id:
        raise TokenWrongDevice(f"token is for device {token.device_id}, not {device_id}")
    return token


def check_validity(token: VerdictToken, *, now_unix_s: float, max_clock_skew_s: float) -> None:
    """Raise TokenNotYetValid or TokenExpired unless the token holds at `now_unix_s`.

    The skew allowance only excuses an issued-at slightly in the future (the verifier's clock
    ahead of ours); it never extends the expiry, so a skewed clock cannot stretch a token's life
    beyond what the verifier signed.
    """
    if not math.isfinite(max_clock_skew_s) or max_clock_skew_s < 0:
        raise ValueError(f"max_clock_skew_s must be finite and >= 0, got {max_clock_skew_s}")
    if token.issued_at_unix_s > now_unix_s + max_clock_skew_s:
        raise TokenNotYetValid(
            f"token issued at {token.issued_at_unix_s}, "
            f"{token.issued_at_unix_s - now_unix_s:.0f} s in the future "
            f"(allowed skew {max_clock_skew_s:.0f} s): check this host's clock"
        )
    if now_unix_s >= token.expires_at_unix_s:
        raise TokenExpired(
            f"token expired {now_unix_s - token.expires_at_unix_s:.0f} s ago "
            f"(at {token.expires_at_unix_s})",
            token,
        )


def verify_token(
    text: str,
    verifier_public_keys: bytes | Iterable[bytes],
    *,
    device_id: str,
    now_unix_s: float,
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
) -> VerdictToken:
    """The token, if authentic, for `device_id` and valid at `now_unix_s`; else a TokenError.

    The verdict inside is NOT checked here: a valid token may well say REFUTED.
    """
    token = authenticate_token(text, verifier_public_keys, device_id=device_id)
    check_validity(token, now_unix_s=now_unix_s, max_clock_skew_s=max_clock_skew_s)
    return token
