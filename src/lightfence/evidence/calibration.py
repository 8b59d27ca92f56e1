"""Signed GPU signing-time calibration: a lower bound S_floor per (GPU model, firmware).

A GPU round's RTT includes the time S the GPU took to sign. Subtracting a *lower bound* of S
keeps a cap sound and makes it tighter; subtracting more would be unsound, so a floor is used
only from a file signed by a key the verifier trusts (docs/trust.md):

    {"format": "lightfence-gpu-calibration", "version": 1,
     "entries": [{"hwmodel": "GH100 A01 GSP BROM", "vbios_version": "96.00.9f.00.01",
                  "s_floor_ns": 7500000, "reports": 1000}],
     "signer_public_key": "<64 hex>", "signature": "<128 hex>"}

The signature is Ed25519 over "lightfence/gpu-calibration/v1\\0" followed by the entries as
canonical JSON (sorted keys, no spaces). Without a trusted file S_floor is 0.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightfence.crypto.keys import SigningKey, verify_signature

CALIBRATION_FORMAT = "lightfence-gpu-calibration"
CALIBRATION_DOMAIN = b"lightfence/gpu-calibration/v1\x00"
MAX_FLOOR_NS = 1_000_000_000


class CalibrationError(ValueError):
    """The calibration file is unreadable, malformed, or not signed by a trusted key."""


@dataclass(frozen=True)
class Calibration:
    floors_ns: Mapping[tuple[str, str], int]
    """(hwmodel, vbios_version) -> S_floor in ns."""
    signer_public_key: bytes = b""

    def floor_ms(self, hwmodel: str, vbios_version: str) -> float:
        """S_floor for this GPU model and firmware; 0 when the file does not list them."""
        return self.floors_ns.get((hwmodel, vbios_version), 0) / 1e6


NO_CALIBRATION = Calibration({})


def _signed_bytes(entries: list[dict[str, Any]]) -> bytes:
    return CALIBRATION_DOMAIN + json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()


def sign_calibration(entries: list[dict[str, Any]], key: SigningKey) -> dict[str, Any]:
    """A calibration document over `entries`, signed by `key` (for scripts/gpu_check.py)."""
    parse_entries(entries)
    return {
        "format": CALIBRATION_FORMAT,
        "version": 1,
        "entries": entries,
        "signer_public_key": key.public_bytes.hex(),
        "signature": key.sign(_signed_bytes(entries)).hex(),
    }


def parse_entries(entries: object) -> dict[tuple[str, str], int]:
    if not isinstance(entries, list):
        raise CalibrationError("entries must be a list")
    out: dict[tuple[str, str], int] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise CalibrationError(f"entry {i} must be an object")
        hw, fw, floor = e.get("hwmodel"), e.get("vbios_version"), e.get("s_floor_ns")
        if not isinstance(hw, str) or not isinstance(fw, str):
            raise CalibrationError(f"entry {i}: hwmodel and vbios_version must be strings")
        if type(floor) is not int or not 0 <= floor <= MAX_FLOOR_NS:
            raise CalibrationError(f"entry {i}: s_floor_ns must be an integer in [0, 1e9]")
        if (hw, fw) in out:
            raise CalibrationError(f"entry {i}: {hw} / {fw} listed twice")
        out[(hw, fw)] = floor
    return out


def parse_calibration(doc: object, trusted_keys: Collection[bytes]) -> Calibration:
    """Check the document's signature against `trusted_keys`; CalibrationError otherwise."""
    if not isinstance(doc, Mapping) or doc.get("format") != CALIBRATION_FORMAT:
        raise CalibrationError("not a lightfence GPU calibration file")
    if doc.get("version") != 1:
        raise CalibrationError(f"unsupported calibration version {doc.get('version')!r}")
    try:
        signer = bytes.fromhex(str(doc["signer_public_key"]))
        signature = bytes.fromhex(str(doc["signature"]))
        entries = doc["entries"]
    except (KeyError, ValueError) as exc:
        raise CalibrationError(f"malformed calibration file: {exc}") from None
    if signer not in trusted_keys:
        raise CalibrationError("calibration is signed by a key that is not trusted")
    floors = parse_entries(entries)
    if not verify_signature(signer, signature, _signed_bytes(entries)):
        raise CalibrationError("calibration signature does not verify")
    return Calibration(floors, signer)


def load_calibration(path: Path, trusted_keys: Collection[bytes]) -> Calibration:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"cannot read calibration {path}: {exc}") from None
    return parse_calibration(doc, trusted_keys)
