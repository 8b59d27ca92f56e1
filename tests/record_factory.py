"""Real signed measurement records for tests: real Ed25519 keys, real signatures, no mocks."""

from __future__ import annotations

import hashlib

from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import DeviceIdentity, software_identity
from lightfence.model.trust import TrustLevel
from lightfence.protocol.challenge import challenge_signing_bytes
from lightfence.protocol.record import MeasurementRecord, TimestampSource


def seeded_key(label: str) -> SigningKey:
    """A deterministic key per label, so failures reproduce."""
    return SigningKey.from_seed(hashlib.sha256(label.encode()).digest())


def make_signed_record(
    landmark_key: SigningKey,
    device_key: SigningKey,
    *,
    landmark_id: str = "fra1",
    rtts_ns: tuple[int, ...] = (1_500_000, 1_200_000, 1_300_000),
    identity: DeviceIdentity | None = None,
    session_id: bytes = b"S" * 16,
    measured_at_unix_ns: int = 1_764_000_000_000_000_000,
) -> MeasurementRecord:
    ident = identity or software_identity(device_key)
    fastest = min(range(len(rtts_ns)), key=lambda i: rtts_ns[i])
    nonce = hashlib.sha256(session_id + bytes([fastest])).digest()
    sig = device_key.sign(
        challenge_signing_bytes(nonce, landmark_id, ident.device_id, session_id, fastest)
    )
    return MeasurementRecord(
        landmark_id=landmark_id,
        landmark_key_id=landmark_key.key_id,
        device_id=ident.device_id,
        device_key_id=device_key.key_id,
        trust_level=ident.trust_level if identity else TrustLevel.SOFTWARE,
        session_id=session_id,
        rounds_sent=len(rtts_ns),
        rtts_ns=rtts_ns,
        fastest_round=fastest,
        fastest_nonce=nonce,
        device_signature=sig,
        timestamp_source=TimestampSource.KERNEL,
        measured_at_unix_ns=measured_at_unix_ns,
    ).signed_by(landmark_key)
