"""GPU-signed timed rounds: the challenge-derived nonce, the landmark's record, and its checks.

A GPU round is a timed round whose answer is an NVIDIA attestation report (SPDM MEASUREMENTS,
signed by the GPU's P-384 key) over `gpu_nonce(...)`, a hash of the landmark's challenge. The
landmark times it like any round (challenge out to report in, on its own clock), appraises the
report off the timed path, and signs a `GpuRoundRecord` that binds the RTT to the report and
chain by SHA-256. The report and chain travel beside the record (`GpuEvidence`) so that anyone
can appraise them again offline; `verify_gpu_round` does both checks.

Canonical bytes (what the landmark signs):

    "lightfence/gpu-round/v1\\0" || version u8 || landmark_id str || landmark_key_id 16
      || device_id 16 || session_id 16 || round u8 || nonce 32 || rtt_ns u64
      || timestamp_source str || report_sha256 32 || chain_sha256 32 || gpu_id 16
      || measured_at u64
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightfence.attestation import Appraisal, AppraisalPolicy, appraise
from lightfence.attestation.spdm import MAX_REPORT_BYTES
from lightfence.crypto.keys import SIGNATURE_LEN, SigningKey, key_id, verify_signature
from lightfence.protocol.challenge import ID_LEN, NONCE_LEN, SESSION_ID_LEN, id_bytes
from lightfence.protocol.record import MAX_RTT_NS, TimestampSource, hex_field, str_field
from lightfence.protocol.wire import Writer

GPU_NONCE_DOMAIN = b"lightfence/gpu-nonce/v1\x00"
GPU_ROUND_DOMAIN = b"lightfence/gpu-round/v1\x00"
GPU_ROUND_VERSION = 1
MAX_CHAIN_BYTES = 32 * 1024
_DIGEST_LEN = 32


class GpuRoundError(ValueError):
    """A GPU round record or its evidence is malformed or fails a check; says which."""


def gpu_nonce(
    nonce: bytes, landmark_id: str, device_id: str, session_id: bytes, round_no: int
) -> bytes:
    """The 32-byte nonce the GPU must sign to answer this challenge (and no other)."""
    if len(nonce) != NONCE_LEN or len(session_id) != SESSION_ID_LEN:
        raise ValueError("nonce and session id must be 32 and 16 bytes")
    data = (
        Writer()
        .fixed(nonce, NONCE_LEN)
        .text(landmark_id)
        .fixed(id_bytes(device_id), ID_LEN)
        .fixed(session_id, SESSION_ID_LEN)
        .u32(round_no)
        .getvalue()
    )
    return hashlib.sha256(GPU_NONCE_DOMAIN + data).digest()


@dataclass(frozen=True)
class GpuEvidence:
    """What the GPU produced for one round: the SPDM report and its chain (DER, leaf first)."""

    report: bytes
    chain_der: bytes

    def __post_init__(self) -> None:
        if not 0 < len(self.report) <= MAX_REPORT_BYTES:
            raise GpuRoundError(f"report must be 1 to {MAX_REPORT_BYTES} bytes")
        if not 0 < len(self.chain_der) <= MAX_CHAIN_BYTES:
            raise GpuRoundError(f"chain must be 1 to {MAX_CHAIN_BYTES} bytes")

    @property
    def report_sha256(self) -> bytes:
        return hashlib.sha256(self.report).digest()

    @property
    def chain_sha256(self) -> bytes:
        return hashlib.sha256(self.chain_der).digest()

    def to_json_dict(self) -> dict[str, str]:
        return {
            "report": base64.b64encode(self.report).decode(),
            "chain": base64.b64encode(self.chain_der).decode(),
        }

    @classmethod
    def from_json_dict(cls, d: object) -> GpuEvidence:
        if not isinstance(d, Mapping) or set(d) != {"report", "chain"}:
            raise GpuRoundError("GPU evidence must be an object with 'report' and 'chain'")
        try:
            return cls(
                base64.b64decode(d["report"], validate=True),
                base64.b64decode(d["chain"], validate=True),
            )
        except (TypeError, ValueError) as exc:
            raise GpuRoundError(f"GPU evidence is not base64: {exc}") from None


@dataclass(frozen=True)
class GpuRoundRecord:
    """One landmark's signed measurement of one GPU-signed round."""

    landmark_id: str
    landmark_key_id: str
    device_id: str
    """The device (its key identity) the session was opened for."""
    session_id: bytes
    round_no: int
    nonce: bytes
    """The landmark's fresh 32-byte challenge nonce; the GPU signed gpu_nonce() of it."""
    rtt_ns: int
    """Challenge out to report in, on the landmark's clock: includes the GPU's signing time."""
    timestamp_source: TimestampSource
    report_sha256: bytes
    chain_sha256: bytes
    gpu_id: str
    """The GPU id the landmark's appraisal found (attestation.GpuIdentity.gpu_id)."""
    measured_at_unix_ns: int
    landmark_signature: bytes = b""
    version: int = GPU_ROUND_VERSION

    def __post_init__(self) -> None:
        if self.version != GPU_ROUND_VERSION:
            raise GpuRoundError(f"unsupported GPU round version {self.version}")
        if not self.landmark_id or len(self.landmark_id.encode()) > 255:
            raise GpuRoundError("landmark_id must be 1 to 255 UTF-8 bytes")
        for name in ("landmark_key_id", "device_id", "gpu_id"):
            try:
                id_bytes(getattr(self, name))
            except (ValueError, TypeError):
                raise GpuRoundError(f"{name} must be {2 * ID_LEN} lowercase hex digits") from None
        if len(self.session_id) != SESSION_ID_LEN or len(self.nonce) != NONCE_LEN:
            raise GpuRoundError("session_id must be 16 bytes and nonce 32")
        if len(self.report_sha256) != _DIGEST_LEN or len(self.chain_sha256) != _DIGEST_LEN:
            raise GpuRoundError("report_sha256 and chain_sha256 must be 32 bytes")
        for name, v, hi in (
            ("round_no", self.round_no, 63),
            ("rtt_ns", self.rtt_ns, MAX_RTT_NS),
            ("measured_at_unix_ns", self.measured_at_unix_ns, 2**63 - 1),
        ):
            if type(v) is not int or not (1 if name == "rtt_ns" else 0) <= v <= hi:
                raise GpuRoundError(f"{name} out of range: {v!r}")
        if not isinstance(self.timestamp_source, TimestampSource):
            raise GpuRoundError("timestamp_source must be a TimestampSource")
        if len(self.landmark_signature) not in (0, SIGNATURE_LEN):
            raise GpuRoundError(f"landmark_signature must be {SIGNATURE_LEN} bytes")

    @property
    def rtt_ms(self) -> float:
        return self.rtt_ns / 1e6

    @property
    def gpu_nonce(self) -> bytes:
        return gpu_nonce(
            self.nonce, self.landmark_id, self.device_id, self.session_id, self.round_no
        )

    def signed_bytes(self) -> bytes:
        return GPU_ROUND_DOMAIN + (
            Writer()
            .u8(self.version)
            .text(self.landmark_id)
            .fixed(id_bytes(self.landmark_key_id), ID_LEN)
            .fixed(id_bytes(self.device_id), ID_LEN)
            .fixed(self.session_id, SESSION_ID_LEN)
            .u8(self.round_no)
            .fixed(self.nonce, NONCE_LEN)
            .u64(self.rtt_ns)
            .text(self.timestamp_source.value)
            .fixed(self.report_sha256, _DIGEST_LEN)
            .fixed(self.chain_sha256, _DIGEST_LEN)
            .fixed(id_bytes(self.gpu_id), ID_LEN)
            .u64(self.measured_at_unix_ns)
            .getvalue()
        )

    def signed_by(self, landmark_key: SigningKey) -> GpuRoundRecord:
        if landmark_key.key_id != self.landmark_key_id:
            raise GpuRoundError("landmark_key_id does not match the signing key")
        d = self.to_json_dict()
        d["landmark_signature"] = landmark_key.sign(self.signed_bytes()).hex()
        return GpuRoundRecord.from_json_dict(d)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "landmark_id": self.landmark_id,
            "landmark_key_id": self.landmark_key_id,
            "device_id": self.device_id,
            "session_id": self.session_id.hex(),
            "round": self.round_no,
            "nonce": self.nonce.hex(),
            "rtt_ns": self.rtt_ns,
            "timestamp_source": self.timestamp_source.value,
            "report_sha256": self.report_sha256.hex(),
            "chain_sha256": self.chain_sha256.hex(),
            "gpu_id": self.gpu_id,
            "measured_at_unix_ns": self.measured_at_unix_ns,
            "landmark_signature": self.landmark_signature.hex(),
        }

    @classmethod
    def from_json_dict(cls, d: object) -> GpuRoundRecord:
        """Strict: unknown or missing keys, wrong types and upper-case hex are errors."""
        if not isinstance(d, Mapping):
            raise GpuRoundError("a GPU round record must be a JSON object")
        if set(d) != _JSON_KEYS:
            raise GpuRoundError(
                f"GPU round record fields differ: missing {sorted(_JSON_KEYS - set(d))}, "
                f"unknown {sorted(set(d) - _JSON_KEYS)}"
            )
        try:
            return cls(
                version=d["version"],
                landmark_id=str_field(d, "landmark_id"),
                landmark_key_id=str_field(d, "landmark_key_id"),
                device_id=str_field(d, "device_id"),
                session_id=hex_field(d, "session_id"),
                round_no=d["round"],
                nonce=hex_field(d, "nonce"),
                rtt_ns=d["rtt_ns"],
                timestamp_source=TimestampSource(str_field(d, "timestamp_source")),
                report_sha256=hex_field(d, "report_sha256"),
                chain_sha256=hex_field(d, "chain_sha256"),
                gpu_id=str_field(d, "gpu_id"),
                measured_at_unix_ns=d["measured_at_unix_ns"],
                landmark_signature=hex_field(d, "landmark_signature"),
            )
        except GpuRoundError:
            raise
        except ValueError as exc:
            raise GpuRoundError(f"invalid GPU round record: {exc}") from None


_JSON_KEYS = {
    "version", "landmark_id", "landmark_key_id", "device_id", "session_id", "round", "nonce",
    "rtt_ns", "timestamp_source", "report_sha256", "chain_sha256", "gpu_id",
    "measured_at_unix_ns", "landmark_signature",
}  # fmt: skip


def issue_gpu_round(
    *,
    landmark_id: str,
    landmark_key: SigningKey,
    device_id: str,
    session_id: bytes,
    round_no: int,
    nonce: bytes,
    rtt_ns: int,
    timestamp_source: TimestampSource,
    evidence: GpuEvidence,
    policy: AppraisalPolicy,
    utc_ns: int,
) -> tuple[GpuRoundRecord | None, Appraisal]:
    """The landmark's side, after the round was timed: appraise, then sign a record.

    Returns no record when the evidence does not appraise (the appraisal says why): a landmark
    never vouches for an RTT it cannot attribute to a genuine GPU.
    """
    expected = gpu_nonce(nonce, landmark_id, device_id, session_id, round_no)
    appraisal = appraise(evidence.report, evidence.chain_der, expected, policy, utc_ns / 1e9)
    if not appraisal.ok or appraisal.gpu is None:
        return None, appraisal
    record = GpuRoundRecord(
        landmark_id=landmark_id,
        landmark_key_id=landmark_key.key_id,
        device_id=device_id,
        session_id=session_id,
        round_no=round_no,
        nonce=nonce,
        rtt_ns=rtt_ns,
        timestamp_source=timestamp_source,
        report_sha256=evidence.report_sha256,
        chain_sha256=evidence.chain_sha256,
        gpu_id=appraisal.gpu.gpu_id,
        measured_at_unix_ns=utc_ns,
    )
    return record.signed_by(landmark_key), appraisal


def verify_gpu_round(
    record: GpuRoundRecord,
    evidence: GpuEvidence,
    landmark_public_key: bytes,
    policy: AppraisalPolicy,
    now_unix_s: float,
) -> Appraisal:
    """Re-check a GPU round offline: landmark signature, evidence digests, fresh appraisal.

    Raises GpuRoundError naming the failed check; returns the (valid) appraisal otherwise.
    """
    if key_id(landmark_public_key) != record.landmark_key_id:
        raise GpuRoundError(
            f"record names landmark key {record.landmark_key_id}, not the given key"
        )
    if not verify_signature(landmark_public_key, record.landmark_signature, record.signed_bytes()):
        raise GpuRoundError(f"landmark signature of {record.landmark_id} does not verify")
    if evidence.report_sha256 != record.report_sha256:
        raise GpuRoundError("the report is not the one the landmark timed (SHA-256 differs)")
    if evidence.chain_sha256 != record.chain_sha256:
        raise GpuRoundError("the chain is not the one the landmark saw (SHA-256 differs)")
    appraisal = appraise(evidence.report, evidence.chain_der, record.gpu_nonce, policy, now_unix_s)
    if not appraisal.ok or appraisal.gpu is None:
        raise GpuRoundError(f"GPU evidence: {appraisal.reason}")
    if appraisal.gpu.gpu_id != record.gpu_id:
        raise GpuRoundError("the appraised GPU is not the one the landmark recorded")
    return appraisal


def round_from_json(item: object, where: str) -> tuple[GpuRoundRecord, GpuEvidence]:
    """One `{"record": ..., "evidence": ...}` item of a bundle's or a POST's `gpu_rounds`.
    Raises GpuRoundError naming `where` (e.g. "gpu_rounds[3]")."""
    if not isinstance(item, Mapping) or set(item) != {"record", "evidence"}:
        raise GpuRoundError(f"{where} must be {{'record': ..., 'evidence': ...}}")
    try:
        return (
            GpuRoundRecord.from_json_dict(item["record"]),
            GpuEvidence.from_json_dict(item["evidence"]),
        )
    except GpuRoundError as exc:
        raise GpuRoundError(f"{where}: {exc}") from None
