"""Appraise NVIDIA GPU evidence: is this report signed by a genuine GPU, over this nonce?

The checks NVIDIA's local verifier makes on the report and chain (RIM comparison aside), in the
same order: parse the SPDM request and response, compare the request nonce with the one
expected, check the certificate chain up to a configured NVIDIA device root, check the
ECDSA P-384 / SHA-384 signature over request + response (less its signature) with the leaf's
key, and check that the firmware id in the report is the one the leaf certifies.

`appraise` never raises on bad evidence: every failure comes back as an `Appraisal` with
`ok = False` and a reason. Pure apart from the caller's root certificates and `now`.
Revocation (OCSP) needs the network, which an offline appraiser does not have; the policy says
whether its absence is acceptable, and the appraisal says it was skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from lightfence.attestation.certs import (
    ChainCache,
    ChainError,
    GpuIdentity,
    fingerprint,
    load_roots,
    verify_chain,
)
from lightfence.attestation.spdm import (
    NONCE_LEN,
    OPAQUE_FWID,
    SIGNATURE_LEN,
    Measurement,
    SpdmError,
    parse_report,
)


class Revocation(StrEnum):
    """What to do about certificate revocation, which needs NVIDIA's OCSP service."""

    SKIP = "skip"
    """Appraise without it; the appraisal says `revocation: skipped`."""
    REQUIRE = "require"
    """Refuse: an offline appraiser cannot check revocation, so nothing passes."""


@dataclass(frozen=True)
class AppraisalPolicy:
    roots: tuple[x509.Certificate, ...]
    """Trusted NVIDIA device roots (certs.load_roots)."""
    revocation: Revocation = Revocation.SKIP
    chain_cache: ChainCache | None = field(default=None, compare=False)
    """Checked chains to reuse (a verifier appraising many rounds); None checks every time."""


@dataclass(frozen=True)
class Appraisal:
    """The outcome. `ok` only if every check passed; `reason` names the first that failed."""

    ok: bool
    reason: str = ""
    nonce: bytes = b""
    """The nonce the GPU signed (request nonce); set whenever the report parsed."""
    gpu: GpuIdentity | None = None
    driver_version: str = ""
    vbios_version: str = ""
    measurements: tuple[Measurement, ...] = field(default=())
    root_fingerprint: str = ""
    """SHA-256 of the configured root the chain ended at."""
    revocation: str = "skipped: OCSP is not reachable offline"
    report_sha256: str = ""

    def summary(self) -> str:
        if not self.ok:
            return f"rejected: {self.reason}"
        assert self.gpu is not None
        return (
            f"valid: GPU {self.gpu.gpu_id} ({self.gpu.hwmodel}), driver {self.driver_version}, "
            f"VBIOS {self.vbios_version}; revocation {self.revocation}"
        )


def _signature_ok(leaf: x509.Certificate, signed: bytes, raw_sig: bytes) -> bool:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    half = SIGNATURE_LEN // 2
    der = encode_dss_signature(
        int.from_bytes(raw_sig[:half], "big"), int.from_bytes(raw_sig[half:], "big")
    )
    try:
        key.verify(der, signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


def appraise(
    report: bytes,
    chain_der: bytes,
    expected_nonce: bytes,
    policy: AppraisalPolicy,
    now_unix_s: float,
) -> Appraisal:
    """Appraise one report and its chain (concatenated DER, leaf first) against a nonce."""
    digest = hashlib.sha256(report).hexdigest()

    def reject(reason: str, nonce: bytes = b"") -> Appraisal:
        return Appraisal(ok=False, reason=reason, nonce=nonce, report_sha256=digest)

    if policy.revocation is Revocation.REQUIRE:
        return reject("revocation check required, but OCSP is not reachable offline")
    if len(expected_nonce) != NONCE_LEN:
        return reject(f"expected nonce must be {NONCE_LEN} bytes")
    try:
        parsed = parse_report(report)
    except SpdmError as exc:
        return reject(f"malformed report: {exc}")
    if parsed.request_nonce != expected_nonce:
        return reject(
            f"nonce mismatch: report carries {parsed.request_nonce.hex()[:16]}..., "
            f"expected {expected_nonce.hex()[:16]}...",
            nonce=parsed.request_nonce,
        )
    try:
        if policy.chain_cache is not None:
            leaf, gpu, anchor = policy.chain_cache.verify(chain_der, policy.roots, now_unix_s)
        else:
            leaf, gpu, anchor = verify_chain(chain_der, policy.roots, now_unix_s)
    except ChainError as exc:
        return reject(f"certificate chain: {exc}", nonce=parsed.request_nonce)
    if not _signature_ok(leaf, parsed.signed_bytes, parsed.signature):
        return reject("the report's signature does not verify with the leaf certificate's key")
    report_fwid = parsed.opaque_field(OPAQUE_FWID)
    if report_fwid and report_fwid != gpu.fwid:
        return reject("the report's firmware id is not the one the leaf certificate certifies")
    return Appraisal(
        ok=True,
        nonce=parsed.request_nonce,
        gpu=gpu,
        driver_version=parsed.driver_version,
        vbios_version=parsed.vbios_version,
        measurements=parsed.measurements,
        root_fingerprint=fingerprint(anchor),
        report_sha256=digest,
    )


def default_policy(
    roots: Sequence[x509.Certificate] | None = None, chain_cache: ChainCache | None = None
) -> AppraisalPolicy:
    """NVIDIA's vendored device root, revocation skipped."""
    return AppraisalPolicy(
        roots=tuple(roots) if roots is not None else load_roots(), chain_cache=chain_cache
    )
