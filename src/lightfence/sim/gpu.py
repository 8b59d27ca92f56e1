"""A GPU stand-in: signs SPDM-shaped measurement reports as an NVIDIA GPU would.

For tests and the demo only, where no GPU exists. It holds a P-384 alias key certified by a
per-chip "device identity" key, certified by a test root ("lightfence TEST GPU Root", never
NVIDIA's). Reports have the layout of a real Hopper report (spdm.build_report), so the same
appraisal code checks them; only the root differs, and a verifier configured with NVIDIA's
root rejects them. The signing time S a real GPU adds to a timed round is drawn from a
configurable distribution (`SigningTime`), which the demo adds to the emulated RTT.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from lightfence.attestation import Appraisal, AppraisalPolicy
from lightfence.attestation.certs import FWID_OIDS
from lightfence.attestation.spdm import (
    OPAQUE_DRIVER_VERSION,
    OPAQUE_FWID,
    OPAQUE_VBIOS_VERSION,
    Measurement,
    SpdmReport,
    build_report,
)
from lightfence.crypto.keys import SigningKey
from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord, gpu_nonce, issue_gpu_round
from lightfence.protocol.record import TimestampSource

_NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
_NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
TEST_ROOT_NAME = "lightfence TEST GPU Root (not NVIDIA)"
STANDIN_HWMODEL = "LF-TEST GPU BROM"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lightfence test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    fwid: bytes = b"",
    algorithm: hashes.SHA256 | hashes.SHA384 | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if fwid:
        # Same shape as Hopper's: an opaque DICE extension whose last 48 bytes are the FWID.
        oid = x509.ObjectIdentifier(FWID_OIDS[0])
        builder = builder.add_extension(
            x509.UnrecognizedExtension(oid, b"\x30\x00" + fwid), critical=False
        )
    return builder.sign(issuer_key, algorithm or hashes.SHA384())


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class GpuTestRoot:
    """A test CA standing in for "NVIDIA Device Identity CA"."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls) -> GpuTestRoot:
        key = ec.generate_private_key(ec.SECP384R1())
        return cls(_cert(TEST_ROOT_NAME, key, TEST_ROOT_NAME, key, ca=True), key)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class SigningTime:
    """Time a GPU takes to produce a signed report: floor_ms + lognormal(mu, sigma) ms.

    The default is a guess for Hopper in CC mode (NVML round trip through the driver and GSP),
    not a measurement: scripts/gpu_check.py measures the real one on a GPU host.
    """

    floor_ms: float = 8.0
    median_extra_ms: float = 2.0
    sigma: float = 0.5

    def draw_ms(self, rng: random.Random) -> float:
        return self.floor_ms + rng.lognormvariate(0.0, self.sigma) * self.median_extra_ms


@dataclass
class GpuStandIn:
    """One stand-in GPU: its keys, its chain, and a report signer."""

    root: GpuTestRoot
    driver_version: str = "550.90.07"
    vbios_bytes: bytes = bytes.fromhex("009f009601000000")
    signing_time: SigningTime = field(default_factory=SigningTime)
    hash_algorithm: hashes.SHA256 | hashes.SHA384 | None = None
    """Override the certificates' hash (tests of a wrong algorithm); default SHA-384."""

    def __post_init__(self) -> None:
        self._device_key = ec.generate_private_key(ec.SECP384R1())
        self._alias_key = ec.generate_private_key(ec.SECP384R1())
        self.fwid = hashlib.sha384(b"stand-in firmware " + self.vbios_bytes).digest()
        device = _cert(
            STANDIN_HWMODEL,
            self._device_key,
            TEST_ROOT_NAME,
            self.root.key,
            ca=True,
            algorithm=self.hash_algorithm,
        )
        leaf = _cert(
            "LF-TEST GPU FMC LF",
            self._alias_key,
            STANDIN_HWMODEL,
            self._device_key,
            ca=False,
            fwid=self.fwid,
            algorithm=self.hash_algorithm,
        )
        self.chain_der = _der(leaf) + _der(device) + _der(self.root.cert)
        self._measurements = tuple(
            Measurement(i, 1, hashlib.sha384(b"block %d" % i).digest()) for i in range(1, 9)
        )

    @property
    def vbios_version(self) -> str:
        """As the appraisal reports it (NVIDIA's format)."""
        return SpdmReport.format_vbios(self.vbios_bytes)

    def report(self, nonce: bytes, rng: random.Random | None = None) -> bytes:
        """A signed report over `nonce` (request + response + 96-byte signature)."""
        responder = (rng or random.Random()).randbytes(32)
        opaque = (
            (OPAQUE_VBIOS_VERSION, self.vbios_bytes),
            (OPAQUE_DRIVER_VERSION, self.driver_version.encode() + b"\x00"),
            (OPAQUE_FWID, self.fwid),
        )
        signed = build_report(nonce, responder, self._measurements, opaque)
        der = self._alias_key.sign(signed, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")


@dataclass(frozen=True)
class EmulatedGpuRound:
    record: GpuRoundRecord | None
    evidence: GpuEvidence
    appraisal: Appraisal
    signing_ms: float


def emulate_gpu_round(
    *,
    landmark_id: str,
    landmark_key: SigningKey,
    device_id: str,
    gpu: GpuStandIn,
    path_rtt_ms: float,
    policy: AppraisalPolicy,
    rng: random.Random,
    utc_ns: int,
    session_id: bytes | None = None,
    round_no: int = 0,
) -> EmulatedGpuRound:
    """One GPU round as a landmark would time it: RTT = path RTT + the GPU's signing time.

    Emulation stands in for the network and the GPU only; the nonce derivation, the report's
    signature, the landmark's appraisal and its signed record are the real code.
    """
    session = session_id if session_id is not None else rng.randbytes(16)
    nonce = rng.randbytes(32)
    report = gpu.report(gpu_nonce(nonce, landmark_id, device_id, session, round_no), rng)
    evidence = GpuEvidence(report, gpu.chain_der)
    signing_ms = gpu.signing_time.draw_ms(rng)
    rtt_ns = max(1, round((path_rtt_ms + signing_ms) * 1e6))
    record, appraisal = issue_gpu_round(
        landmark_id=landmark_id,
        landmark_key=landmark_key,
        device_id=device_id,
        session_id=session,
        round_no=round_no,
        nonce=nonce,
        rtt_ns=rtt_ns,
        timestamp_source=TimestampSource.KERNEL,
        evidence=evidence,
        policy=policy,
        utc_ns=utc_ns,
    )
    return EmulatedGpuRound(record, evidence, appraisal, signing_ms)
