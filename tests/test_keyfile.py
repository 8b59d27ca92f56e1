"""crypto.keyfile: a pinned key as hex, a file of hex, or the JSON GET /verifier/key serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightfence.crypto.keyfile import KeyFileError, parse_public_keys, read_public_keys
from lightfence.crypto.keys import SigningKey

A = SigningKey.from_seed(bytes(32))
B = SigningKey.from_seed(bytes(range(32)))
SERVED = {"public_key": A.public_bytes.hex(), "key_id": A.key_id}
"""The body of GET /verifier/key (verifier.api.routes_gate)."""


def test_every_accepted_form(tmp_path: Path) -> None:
    hex_a, hex_b = A.public_bytes.hex(), B.public_bytes.hex()
    assert read_public_keys(hex_a) == [A.public_bytes]
    assert read_public_keys(hex_a.upper()) == [A.public_bytes]
    forms = {
        "bare": f"{hex_a}\n",
        "rotation": f"# current\n{hex_a}\n\n{hex_b}  # next\n",
        "served": json.dumps(SERVED),
        "list": json.dumps([SERVED, hex_b]),
    }
    for name, text in forms.items():
        path = tmp_path / name
        path.write_text(text)
        want = [A.public_bytes] if name in ("bare", "served") else [A.public_bytes, B.public_bytes]
        assert read_public_keys(path) == want, name
        assert read_public_keys(str(path)) == want, name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no public key"),
        ("# only a comment\n", "holds no public key"),
        ("abcd\n", "64 hex digits"),
        ("{not json", "not valid JSON"),
        ('{"key": "abc"}', "public_key"),
        (json.dumps({**SERVED, "key_id": B.key_id}), "does not belong"),
        ("[]", "holds no public key"),
        ("[1]", "public_key"),
        ('"' + "11" * 32 + '"', "64 hex digits"),  # quoted: neither a hex line nor JSON object
        ("00" * 32, "not a valid Ed25519 public key"),  # a small-order point: anyone could sign
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "key"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=message):
        read_public_keys(path)


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read verifier key file"):
        read_public_keys(tmp_path / "missing")
    with pytest.raises(KeyFileError, match="not a valid Ed25519"):
        read_public_keys("00" * 32)
    big = tmp_path / "big"
    big.write_bytes(b"0" * (70 * 1024))
    with pytest.raises(KeyFileError, match="larger than"):
        read_public_keys(big)
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(KeyFileError, match="not text"):
        read_public_keys(binary)
    with pytest.raises(KeyFileError):
        parse_public_keys(json.dumps({"public_key": 5}))
