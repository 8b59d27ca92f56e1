"""The GPU's certificate chain: decode it, check it up to a configured root, name the GPU.

NVIDIA's chain is leaf first: the firmware's alias key ("GH100 A01 GSP FMC LF", signs reports),
the chip's device identity key ("GH100 A01 GSP BROM", fused), provisioning CAs, and the GPU's
copy of "NVIDIA Device Identity CA". As NVIDIA's verifier does, the GPU's copy of the root is
never trusted: it must be byte-identical to a configured root, and the chain must chain to that
configured root by signature.

Checks (each failure a `ChainError` naming it): 1 to 8 certificates, each signed with
ECDSA/SHA-384 by the next, each issuer a CA, every certificate (root included) inside its
validity window at `now`, P-384 keys throughout, and the leaf allowed to sign (key usage).
Not checked: revocation (OCSP needs the network; see appraise.Revocation), name constraints
and path lengths (NVIDIA's chains carry none that bind).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

MAX_CHAIN_CERTS = 8
MAX_CHAIN_BYTES = 32 * 1024
FWID_OIDS = ("2.23.133.5.4.1", "2.23.133.5.4.1.1")
"""TCG DICE FWID extension: the leaf certifies the firmware measurement it was issued to."""
FWID_LEN = 48
GPU_ID_LEN = 16
DEFAULT_ROOT_PATH = Path(__file__).resolve().parent.parent / "data" / "nvidia" / "device_root.pem"
"""NVIDIA Device Identity CA, vendored from nv-local-gpu-verifier (data/nvidia/README.md)."""


class ChainError(ValueError):
    """The certificate chain is malformed or does not lead to a configured root."""


_BAD = (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm)


@dataclass(frozen=True)
class GpuIdentity:
    """Who signed a report, read from a chain that checked out."""

    gpu_id: str
    """Hex, first 16 bytes of SHA-256 over the device identity certificate's public key (the
    fused per-chip key): stable across firmware updates, unique per chip."""
    hwmodel: str
    """Common name of the device identity certificate (e.g. `GH100 A01 GSP BROM`)."""
    ueid: str
    """Decimal serial number of the leaf, as NVIDIA's claims report it."""
    fwid: bytes
    """The firmware measurement the leaf certifies (48 bytes), empty when it has none."""


def split_der(data: bytes) -> list[bytes]:
    """Concatenated DER certificates, split on their outer SEQUENCE lengths."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if data[pos] != 0x30 or pos + 2 > len(data):
            raise ChainError(f"certificate {len(out)} does not start a DER SEQUENCE")
        first = data[pos + 1]
        if first < 0x80:
            head, length = 2, first
        else:
            n = first & 0x7F
            if not 1 <= n <= 3 or pos + 2 + n > len(data):
                raise ChainError(f"certificate {len(out)} has a bad DER length")
            head, length = 2 + n, int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
        end = pos + head + length
        if end > len(data):
            raise ChainError(f"certificate {len(out)} is truncated")
        out.append(data[pos:end])
        pos = end
    return out


def pem_chain_to_der(pem: bytes) -> bytes:
    """A PEM chain (as NVML and NVIDIA's samples give it) as concatenated DER."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except _BAD as exc:
        raise ChainError(f"unreadable PEM chain: {exc}") from None
    return b"".join(c.public_bytes(serialization.Encoding.DER) for c in certs)


def load_roots(path: Path = DEFAULT_ROOT_PATH) -> tuple[x509.Certificate, ...]:
    """Root certificates from a PEM file; raises ChainError if it holds none or is unreadable."""
    try:
        roots = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ChainError(f"cannot read root file {path}: {exc.strerror}") from None
    except _BAD as exc:
        raise ChainError(f"root file {path} holds no PEM certificate: {exc}") from None
    return tuple(roots)


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _check_cert(cert: x509.Certificate, what: str, now: datetime) -> None:
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
        raise ChainError(f"{what} is not signed with ECDSA/SHA-384")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ChainError(f"{what} does not hold a P-384 key")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ChainError(
            f"{what} is outside its validity ({cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d})"
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    if not _is_ca(issuer):
        raise ChainError(f"the issuer of {what} is not a CA")
    try:
        cert.verify_directly_issued_by(issuer)
    except _BAD:
        raise ChainError(f"{what} is not signed by the next certificate up") from None


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _fwid(leaf: x509.Certificate) -> bytes:
    for ext in leaf.extensions:
        if ext.oid.dotted_string in FWID_OIDS and isinstance(ext.value, x509.UnrecognizedExtension):
            # Hopper's FWID extension ends with the SHA-384 firmware digest (NVIDIA's verifier
            # reads the last 48 bytes the same way).
            return bytes(ext.value.value[-FWID_LEN:])
    return b""


def verify_chain(
    chain_der: bytes, roots: Sequence[x509.Certificate], now_unix_s: float
) -> tuple[x509.Certificate, GpuIdentity, x509.Certificate]:
    """Check the chain; return the leaf, the GPU's identity and the configured root it ends at."""
    try:
        return _verify_chain(chain_der, roots, now_unix_s)
    except ChainError:
        raise
    except Exception as exc:
        # Evidence comes from the network. cryptography decodes keys and extensions lazily and
        # raises several unrelated types on corrupt DER (InvalidVersion, UnsupportedGeneralName-
        # Type, ValueError, ...); any of them means "this chain is not acceptable".
        raise ChainError(f"undecodable certificate ({type(exc).__name__}: {exc})") from None


def _verify_chain(
    chain_der: bytes, roots: Sequence[x509.Certificate], now_unix_s: float
) -> tuple[x509.Certificate, GpuIdentity, x509.Certificate]:
    if not roots:
        raise ChainError("no trusted root configured")
    if len(chain_der) > MAX_CHAIN_BYTES:
        raise ChainError(f"chain of {len(chain_der)} bytes exceeds {MAX_CHAIN_BYTES}")
    parts = split_der(chain_der)
    if not 1 <= len(parts) <= MAX_CHAIN_CERTS:
        raise ChainError(f"chain has {len(parts)} certificates; expected 1 to {MAX_CHAIN_CERTS}")
    try:
        certs = [x509.load_der_x509_certificate(p) for p in parts]
    except _BAD as exc:
        raise ChainError(f"undecodable certificate: {exc}") from None
    now = datetime.fromtimestamp(now_unix_s, UTC)
    root_ders = {r.public_bytes(serialization.Encoding.DER): r for r in roots}
    last = certs[-1]
    if last.issuer == last.subject:
        anchor = root_ders.get(parts[-1])
        if anchor is None:
            raise ChainError("the chain ends at a root that is not the configured root")
        certs.pop()
    if not certs:
        raise ChainError("the chain holds only a root, no GPU certificate")
    for i, cert in enumerate(certs):
        _check_cert(cert, f"certificate {i}", now)
    for i in range(len(certs) - 1):
        _issued_by(certs[i], certs[i + 1], f"certificate {i}")
    top = certs[-1]
    anchor = next((r for r in roots if r.subject == top.issuer), None)
    if anchor is None:
        raise ChainError("the chain does not lead to the configured root (issuer name differs)")
    _check_cert(anchor, "the configured root", now)
    _issued_by(top, anchor, f"certificate {len(certs) - 1}")
    leaf = certs[0]
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise ChainError("the leaf certificate may not sign")
    except x509.ExtensionNotFound:
        pass
    device = certs[1] if len(certs) > 1 else leaf
    spki = device.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    identity = GpuIdentity(
        gpu_id=hashlib.sha256(spki).digest()[:GPU_ID_LEN].hex(),
        hwmodel=_common_name(device),
        ueid=str(leaf.serial_number),
        fwid=_fwid(leaf),
    )
    return leaf, identity, anchor


class ChainCache:
    """Chains already checked, so a verifier seeing many rounds from one GPU checks its chain
    once (four P-384 signatures: most of an appraisal's cost, docs/benchmarks.md).

    Keyed by SHA-256 of the chain bytes and of the configured roots. Only successes are kept.
    The one time-dependent part of the check is validity, so an entry is used only while `now`
    lies inside every certificate's window (the latest not-before to the earliest not-after);
    outside it the chain is checked again, and fails. Bounded: least recently used dropped.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[
            bytes, tuple[x509.Certificate, GpuIdentity, x509.Certificate, datetime, datetime]
        ] = OrderedDict()
        self.hits = 0

    def verify(
        self, chain_der: bytes, roots: Sequence[x509.Certificate], now_unix_s: float
    ) -> tuple[x509.Certificate, GpuIdentity, x509.Certificate]:
        h = hashlib.sha256(chain_der)
        for r in roots:
            h.update(hashlib.sha256(r.public_bytes(serialization.Encoding.DER)).digest())
        key = h.digest()
        now = datetime.fromtimestamp(now_unix_s, UTC)
        hit = self._entries.get(key)
        if hit is not None and hit[3] <= now <= hit[4]:
            self._entries.move_to_end(key)
            self.hits += 1
            return hit[0], hit[1], hit[2]
        leaf, identity, anchor = verify_chain(chain_der, roots, now_unix_s)
        certs = [x509.load_der_x509_certificate(p) for p in split_der(chain_der)] + [anchor]
        not_before = max(c.not_valid_before_utc for c in certs)
        not_after = min(c.not_valid_after_utc for c in certs)
        self._entries[key] = (leaf, identity, anchor, not_before, not_after)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return leaf, identity, anchor
