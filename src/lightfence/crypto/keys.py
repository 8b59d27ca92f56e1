"""Ed25519 keys: generation, key files (created 0600), key ids and signature checks.

Public keys travel as their 32 raw bytes (hex in text formats). A key id is the first 16 bytes
of SHA-256 over the raw public key, in hex, so anyone holding the public key can recompute it.

Key generation and key files use `cryptography` (OpenSSL, PKCS#8). Signing and checks use
libsodium (through PyNaCl), the faster of the two here: a device's signature sits inside every
timed round, where each microsecond is 0.15 km of radius, and checks are the landmark's and
the verifier's hot path (docs/benchmarks.md has the figures). Ed25519 signatures are
deterministic, so both libraries give the same bytes. libsodium's check is also the stricter
(it refuses non-canonical encodings and small-order keys and R points): a signature it accepts
is one OpenSSL accepts too, so every record still verifies anywhere.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import nacl.bindings
import nacl.exceptions

if TYPE_CHECKING:
    # Imported where a private key is made or read: checking a signature (the gate at every
    # job start) needs libsodium only, and loading OpenSSL's bindings costs ~25 ms.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64
KEY_ID_LEN = 16
"""Bytes of SHA-256 kept in a key id: 128 bits, far beyond any birthday collision risk here."""

KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed or readable by other users."""


def refuse_shared_mode(path: Path, mode: int, what: str) -> None:
    """KeyFileError if a secret's file (st_mode `mode`) is open to other users, as ssh refuses."""
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(
            f"{what} {path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )


def key_id(public_key: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key: hex of SHA-256(public_key)[:16]."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_LEN} bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:KEY_ID_LEN].hex()


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`.

    Never raises on bad input from the network: a malformed key or signature is simply invalid.
    """
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        # libsodium's combined-mode open is its detached check plus a copy of the message
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def parse_public_key_hex(text: str) -> bytes:
    """Raw public key from its 64-hex-digit text form; ValueError with a clear message otherwise."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(
            f"public key must be {2 * PUBLIC_KEY_LEN} hex digits: {text[:80]!r}"
        ) from None
    if len(raw) != PUBLIC_KEY_LEN:
        raise ValueError(f"public key must be {2 * PUBLIC_KEY_LEN} hex digits, got {len(text)}")
    # libsodium's point check also refuses small-order points: such a "key" admits signatures
    # that verify under OpenSSL for every message, so anyone anywhere could answer for it.
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
        raise ValueError("not a valid Ed25519 public key (not a point of the prime-order group)")
    return raw


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key with its public half and key id at hand."""

    private: Ed25519PrivateKey = field(repr=False)
    """The private key; never printed, never serialised except by `save`."""
    public_bytes: bytes = field(init=False, compare=False)
    """The raw 32-byte public key."""
    key_id: str = field(init=False, compare=False)
    """Key id of the public key (see `key_id`)."""
    _sodium_secret: bytes = field(init=False, repr=False, compare=False)
    """The same key in libsodium's form (seed || public key), for signing."""

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives import serialization

        # Derived once: landmarks read them for every record they sign.
        seed = self.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        object.__setattr__(self, "public_bytes", public)
        object.__setattr__(self, "key_id", key_id(public))
        object.__setattr__(self, "_sodium_secret", secret)

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """A key from its 32-byte seed (tests and deterministic fixtures)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        # libsodium's combined mode returns signature || message
        return nacl.bindings.crypto_sign(message, self._sodium_secret)[:SIGNATURE_LEN]

    def save(self, path: Path, *, overwrite: bool = False) -> None:
        """Write the key as unencrypted PKCS#8 PEM, created with mode 0600.

        The file is created with its final mode in one step (no window where it is readable by
        others). An existing file is kept unless `overwrite`: losing a landmark or device key
        silently would orphan every record it signed.
        """
        from cryptography.hazmat.primitives import serialization

        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            fd = os.open(path, flags, KEY_FILE_MODE)
        except FileExistsError:
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
        except OSError as exc:
            raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), KEY_FILE_MODE)
            out.write(pem)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a key written by `save`; refuses a file others can read, as ssh does."""
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"key file {path} not found") from None
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
        refuse_shared_mode(path, mode, "key file")
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path} is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)


def load_or_create(path: Path) -> tuple[SigningKey, bool]:
    """The key at `path`, creating it first when absent. Returns (key, created)."""
    if path.exists():
        return SigningKey.load(path), False
    key = SigningKey.generate()
    key.save(path)
    return key, True
