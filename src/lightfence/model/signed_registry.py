"""The landmark registry as the verifier signs it, so an agent needs only the verifier's URL and
its pinned public key (the key `GET /verifier/key` serves, which also signs gate tokens).

The document is a registry file (model.registry) with three more keys, so any reader of the plain
file reads it too:

    {"landmarks": [...], "issued_at_unix_ns": 1765000000000000000,
     "verifier_key_id": "<32 hex>", "signature": "<128 hex>"}

The signature is Ed25519 over REGISTRY_DOMAIN + canonical JSON of everything but `signature`.
A registry older than the reader's `max_age_s` (or issued in its future) is refused: an old one,
replayed, could send agents to landmarks retired since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lightfence.crypto.keys import SigningKey, key_id, verify_signature
from lightfence.model.canonical import canonical_json
from lightfence.model.registry import LandmarkEntry, RegistryError, parse_registry, registry_json

REGISTRY_DOMAIN = b"lightfence/landmark-registry/v1\x00"
"""Prefix of the signed bytes, so a registry signature is never valid as another message (a gate
token or an audit checkpoint is signed by the same key)."""
MAX_REGISTRY_AGE_S = 3600.0
"""An agent refuses a registry signed longer ago than this; the verifier signs one per request."""
MAX_FUTURE_SKEW_S = 300.0
"""Clock difference tolerated between the verifier that signed and the agent that checks."""


def _signed_bytes(doc: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return REGISTRY_DOMAIN + canonical_json(body).encode()


def sign_registry(
    entries: Iterable[LandmarkEntry], key: SigningKey, issued_at_unix_ns: int
) -> dict[str, Any]:
    """The signed registry document for these landmarks, issued now."""
    doc: dict[str, Any] = {
        **registry_json(entries),
        "issued_at_unix_ns": issued_at_unix_ns,
        "verifier_key_id": key.key_id,
    }
    doc["signature"] = key.sign(_signed_bytes(doc)).hex()
    return doc


def verify_registry(
    doc: object,
    verifier_key: bytes,
    now_unix_ns: int,
    max_age_s: float = MAX_REGISTRY_AGE_S,
) -> dict[str, LandmarkEntry]:
    """The landmarks of a signed registry once its signature, by `verifier_key`, and its age
    check; RegistryError saying which check failed otherwise."""
    if not isinstance(doc, Mapping):
        raise RegistryError("the signed landmark registry is not a JSON object")
    signature = doc.get("signature")
    if not isinstance(signature, str) or not signature:
        raise RegistryError("the landmark registry is not signed (no signature)")
    kid = doc.get("verifier_key_id")
    if kid != key_id(verifier_key):
        raise RegistryError(
            f"the landmark registry is signed by key {kid!r}, not the pinned verifier key "
            f"{key_id(verifier_key)}"
        )
    try:
        raw = bytes.fromhex(signature)
    except ValueError:
        raise RegistryError("the landmark registry's signature is not hex") from None
    if not verify_signature(verifier_key, raw, _signed_bytes(doc)):
        raise RegistryError(
            "the landmark registry's signature does not verify: it was altered after signing"
        )
    issued = doc.get("issued_at_unix_ns")
    if isinstance(issued, bool) or not isinstance(issued, int):
        raise RegistryError("the landmark registry has no issued_at_unix_ns")
    age_s = (now_unix_ns - issued) / 1e9
    if age_s > max_age_s:
        raise RegistryError(
            f"the landmark registry was signed {age_s:.0f} s ago, more than {max_age_s:.0f} s: "
            "a replayed old registry"
        )
    if age_s < -MAX_FUTURE_SKEW_S:
        raise RegistryError(
            f"the landmark registry was signed {-age_s:.0f} s in the future: check this host's "
            "clock"
        )
    return parse_registry(doc)
