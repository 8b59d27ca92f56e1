from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.crypto.keys import (
    KeyFileError,
    SigningKey,
    key_id,
    load_or_create,
    parse_public_key_hex,
    verify_signature,
)


def test_key_file_is_created_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    key = SigningKey.generate()
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).public_bytes == key.public_bytes


def test_existing_key_is_never_overwritten_silently(tmp_path: Path) -> None:
    path = tmp_path / "k"
    SigningKey.generate().save(path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        SigningKey.generate().save(path)


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    SigningKey.generate().save(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SigningKey.load(path)


def test_garbage_and_missing_key_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        SigningKey.load(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.write_bytes(b"hello")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM"):
        SigningKey.load(bad)


def test_load_or_create_creates_once(tmp_path: Path) -> None:
    k1, created1 = load_or_create(tmp_path / "k")
    k2, created2 = load_or_create(tmp_path / "k")
    assert created1 and not created2
    assert k1.key_id == k2.key_id


def test_key_id_is_derived_from_the_public_key() -> None:
    key = SigningKey.from_seed(bytes(32))
    assert key.key_id == key_id(key.public_bytes)
    assert len(key.key_id) == 32
    assert SigningKey.from_seed(bytes([1]) * 32).key_id != key.key_id


def test_signatures_verify_and_never_raise_on_garbage() -> None:
    key = SigningKey.generate()
    sig = key.sign(b"msg")
    assert verify_signature(key.public_bytes, sig, b"msg")
    assert not verify_signature(key.public_bytes, sig, b"msh")
    assert not verify_signature(key.public_bytes, sig[:-1] + bytes([sig[-1] ^ 1]), b"msg")
    assert not verify_signature(b"short", sig, b"msg")
    assert not verify_signature(key.public_bytes, b"", b"msg")
    assert not verify_signature(b"\xff" * 32, sig, b"msg")


def test_public_key_hex_parsing() -> None:
    key = SigningKey.generate()
    assert parse_public_key_hex(key.public_bytes.hex() + "\n") == key.public_bytes
    for bad in ("zz", "00" * 31, "00" * 33):
        with pytest.raises(ValueError):
            parse_public_key_hex(bad)


def _openssl_accepts(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=200),
    where=st.sampled_from(["none", "signature", "message", "key"]),
    bit=st.integers(0, 255),
)
def test_libsodium_check_never_accepts_what_openssl_refuses(
    seed: bytes, message: bytes, where: str, bit: int
) -> None:
    # Checks run on libsodium, keys and signing on OpenSSL: a record must verify in both, and
    # the check must not be the more lenient of the two.
    key = SigningKey.from_seed(seed)
    pub, sig, msg = key.public_bytes, key.sign(message), message
    if where == "signature":
        sig = _flip(sig, bit % (8 * len(sig)))
    elif where == "message":
        msg = _flip(msg, bit % (8 * len(msg))) if msg else b"\x00"
    elif where == "key":
        pub = _flip(pub, bit)
    ours = verify_signature(pub, sig, msg)
    assert ours == (where == "none")
    if ours:
        assert _openssl_accepts(pub, sig, msg)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_a_small_order_key_that_signs_everything_is_refused() -> None:
    # The neutral point as a public key, with R = neutral and S = 0, satisfies the cofactorless
    # equation for every message: a "device key" anyone could answer with from anywhere.
    neutral = (1).to_bytes(32, "little")
    universal = neutral + bytes(32)
    assert not verify_signature(neutral, universal, b"any challenge")
    assert not verify_signature(neutral, universal, b"another")
    assert _openssl_accepts(neutral, universal, b"any challenge")  # why we check with libsodium
    with pytest.raises(ValueError, match="prime-order"):
        parse_public_key_hex(neutral.hex())


@settings(max_examples=100, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_signatures_are_the_ones_openssl_makes(seed: bytes, message: bytes) -> None:
    # Signing runs on libsodium; Ed25519 is deterministic, so OpenSSL's bytes must come out.
    key = SigningKey.from_seed(seed)
    assert key.sign(message) == key.private.sign(message)
    assert _openssl_accepts(key.public_bytes, key.sign(message), message)
