from __future__ import annotations

import stat
from pathlib import Path

import pytest

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
