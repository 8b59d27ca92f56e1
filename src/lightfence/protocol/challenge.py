"""What the device signs in each round, and the fixed sizes of the round's fields.

The device signs (nonce, landmark id, device id, session, round) under a versioned domain tag,
so an answer is bound to one fresh challenge from one landmark in one session and cannot be
replayed to another landmark, session or round, nor reused by another protocol.
"""

from __future__ import annotations

from lightfence.protocol.wire import Writer

CHALLENGE_DOMAIN = b"lightfence/challenge/v1\x00"
NONCE_LEN = 32
SESSION_ID_LEN = 16
ID_LEN = 16
"""Raw bytes of a device id or key id (shown as 32 hex digits)."""


def challenge_signing_bytes(
    nonce: bytes, landmark_id: str, device_id: str, session_id: bytes, round_no: int
) -> bytes:
    """The exact bytes a device signs to answer round `round_no` of session `session_id`."""
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"nonce must be {NONCE_LEN} bytes")
    middle = challenge_middle(landmark_id, device_id, session_id)
    return CHALLENGE_DOMAIN + nonce + middle + Writer().u32(round_no).getvalue()


def challenge_middle(landmark_id: str, device_id: str, session_id: bytes) -> bytes:
    """The part of the signed bytes fixed for a whole session (precomputed on the timed path)."""
    return (
        Writer()
        .text(landmark_id)
        .fixed(id_bytes(device_id), ID_LEN)
        .fixed(session_id, SESSION_ID_LEN)
        .getvalue()
    )


def id_bytes(hex_id: str) -> bytes:
    """Raw bytes of a 32-hex-digit device or key id; ValueError otherwise."""
    raw = bytes.fromhex(hex_id)
    if len(raw) != ID_LEN or hex_id != raw.hex():
        raise ValueError(f"id must be {2 * ID_LEN} lowercase hex digits: {hex_id[:40]!r}")
    return raw
