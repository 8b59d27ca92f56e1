"""Wire messages of the timed challenge protocol (version 2).

Every datagram starts with a 4-byte header: magic `LF`, the protocol version, the message type.
Fields are fixed-size or length-prefixed (see docs/protocol.md); `decode` consumes exactly the
whole datagram or raises DecodeError, so truncated, oversized and trailing-garbage datagrams are
all rejected the same way. Messages are frozen dataclasses validated at construction: building
an invalid message is a local error (ValueError), decoding one is a remote error (DecodeError).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from lightfence.crypto.keys import PUBLIC_KEY_LEN, SIGNATURE_LEN
from lightfence.model.trust import TrustLevel
from lightfence.protocol.challenge import ID_LEN, NONCE_LEN, SESSION_ID_LEN, id_bytes
from lightfence.protocol.record import MAX_ROUNDS
from lightfence.protocol.wire import DecodeError, Reader, Writer

MAGIC = b"LF"
PROTOCOL_VERSION = 2
"""Version 2 added the retry cookie (RETRY, and the cookie field of HELLO): version 1 HELLOs
are answered with one short version-1 REJECT saying so (`encode_version_reject`)."""
HELLO_ID_LEN = 8
MAX_DATAGRAM_BYTES = 1200
"""No valid message is longer; anything longer is rejected before decoding (and fits any MTU)."""
MAX_DETAIL_BYTES = 120
HEADER_LEN = 4
HELLO_MIN_BYTES = 360
"""A HELLO is padded to at least this: more than the SESSION plus first CHALLENGE it triggers
(at most 46 + 255 + 53 = 354 bytes) once its cookie checks, and more than any RETRY or REJECT,
so a spoofed HELLO cannot amplify traffic to its victim."""
MAX_COOKIE_BYTES = 64
"""Longest cookie a HELLO may echo (a landmark's are protocol.cookie.COOKIE_LEN bytes)."""
CHALLENGE_LEN = HEADER_LEN + SESSION_ID_LEN + 1 + NONCE_LEN
RESPONSE_LEN = HEADER_LEN + SESSION_ID_LEN + 1 + SIGNATURE_LEN


class MessageType(IntEnum):
    HELLO = 1
    SESSION = 2
    CHALLENGE = 3
    RESPONSE = 4
    RECORD = 5
    REJECT = 6
    RETRY = 7


class RejectCode(IntEnum):
    BUSY = 1
    """The landmark is at its bound on concurrent sessions; retry later."""
    RATE_LIMITED = 2
    """Too many sessions from this source; retry later."""
    BAD_REQUEST = 3
    """The hello asked for something the landmark does not serve."""
    NO_VALID_ROUNDS = 4
    """The session ended without a single validly signed, timed answer: no record."""


def _check_len(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(value)}")


def _check_rounds(rounds: int) -> None:
    if not 1 <= rounds <= MAX_ROUNDS:
        raise ValueError(f"rounds must be in [1, {MAX_ROUNDS}], got {rounds}")


@dataclass(frozen=True)
class Hello:
    """Agent -> landmark: open a session for this device."""

    hello_id: bytes
    """8 random bytes chosen by the agent; echoed in the SESSION or REJECT reply."""
    device_id: str
    """32 hex digits (crypto.identity.compute_device_id)."""
    device_public_key: bytes
    """Raw Ed25519 key the answers will be signed with."""
    trust_level: TrustLevel
    rounds: int
    """Rounds the agent asks for; the landmark may serve fewer, never more."""
    cookie: bytes = b""
    """Empty in the first HELLO; the RETRY's cookie, echoed, in the second."""

    def __post_init__(self) -> None:
        _check_len("hello_id", self.hello_id, HELLO_ID_LEN)
        id_bytes(self.device_id)
        _check_len("device_public_key", self.device_public_key, PUBLIC_KEY_LEN)
        if type(self.trust_level) is not TrustLevel:  # a member is one: skip the enum lookup
            TrustLevel(self.trust_level)
        _check_rounds(self.rounds)
        if len(self.cookie) > MAX_COOKIE_BYTES:
            raise ValueError(f"cookie longer than {MAX_COOKIE_BYTES} bytes")

    def cookie_fields(self) -> bytes:
        """The bytes a retry cookie is bound to: every field but the cookie, as on the wire."""
        trust = self.trust_level.value.encode()
        return b"".join(
            (
                self.hello_id,
                bytes.fromhex(self.device_id),
                self.device_public_key,
                _U8[len(trust)],
                trust,
                _U8[self.rounds],
            )
        )


@dataclass(frozen=True)
class Retry:
    """Landmark -> agent: prove you receive at your address; send the HELLO again with this
    cookie. Stateless on the landmark's side, and shorter than any HELLO."""

    hello_id: bytes
    cookie: bytes

    def __post_init__(self) -> None:
        _check_len("hello_id", self.hello_id, HELLO_ID_LEN)
        if not 1 <= len(self.cookie) <= MAX_COOKIE_BYTES:
            raise ValueError(f"cookie must be 1 to {MAX_COOKIE_BYTES} bytes")


@dataclass(frozen=True)
class SessionAccept:
    """Landmark -> agent: a session is open; challenges follow at once."""

    hello_id: bytes
    session_id: bytes
    landmark_id: str
    landmark_key_id: str
    rounds: int

    def __post_init__(self) -> None:
        _check_len("hello_id", self.hello_id, HELLO_ID_LEN)
        _check_len("session_id", self.session_id, SESSION_ID_LEN)
        if not 1 <= len(self.landmark_id.encode()) <= 255:
            raise ValueError("landmark_id must be 1 to 255 UTF-8 bytes")
        id_bytes(self.landmark_key_id)
        _check_rounds(self.rounds)


@dataclass(frozen=True)
class Challenge:
    """Landmark -> agent: sign this nonce now. The clock runs from its send to the answer."""

    session_id: bytes
    round_no: int
    nonce: bytes

    def __post_init__(self) -> None:
        _check_len("session_id", self.session_id, SESSION_ID_LEN)
        if not 0 <= self.round_no < MAX_ROUNDS:
            raise ValueError(f"round_no out of range: {self.round_no}")
        _check_len("nonce", self.nonce, NONCE_LEN)


@dataclass(frozen=True)
class Response:
    """Agent -> landmark: the device's signature of challenge_signing_bytes for the round."""

    session_id: bytes
    round_no: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_len("session_id", self.session_id, SESSION_ID_LEN)
        if not 0 <= self.round_no < MAX_ROUNDS:
            raise ValueError(f"round_no out of range: {self.round_no}")
        _check_len("signature", self.signature, SIGNATURE_LEN)


@dataclass(frozen=True)
class RecordMessage:
    """Landmark -> agent: the signed measurement record (record.MeasurementRecord.to_bytes)."""

    session_id: bytes
    record: bytes

    def __post_init__(self) -> None:
        _check_len("session_id", self.session_id, SESSION_ID_LEN)
        if not 1 <= len(self.record) <= MAX_DATAGRAM_BYTES - 64:
            raise ValueError("record bytes out of range")


@dataclass(frozen=True)
class Reject:
    """Landmark -> agent: no session (BUSY, RATE_LIMITED, BAD_REQUEST) or no record."""

    ref: bytes
    """The hello_id (8 bytes) or session_id (16 bytes) this answers."""
    code: RejectCode
    detail: str = ""

    def __post_init__(self) -> None:
        if len(self.ref) not in (HELLO_ID_LEN, SESSION_ID_LEN):
            raise ValueError("ref must be a hello_id or a session_id")
        RejectCode(self.code)
        if len(self.detail.encode()) > MAX_DETAIL_BYTES:
            raise ValueError(f"detail longer than {MAX_DETAIL_BYTES} bytes")


Message = Hello | SessionAccept | Challenge | Response | RecordMessage | Reject | Retry


def _header(t: MessageType) -> Writer:
    return Writer().fixed(MAGIC, 2).u8(PROTOCOL_VERSION).u8(t)


def header(t: MessageType) -> bytes:
    """The 4 header bytes of a message of type `t`."""
    return _header(t).getvalue()


_HELLO_HEADER = header(MessageType.HELLO)
_RETRY_HEADER = header(MessageType.RETRY)
_SESSION_HEADER = header(MessageType.SESSION)
_RECORD_HEADER = header(MessageType.RECORD)
_HELLO_DEVICE_AT = HEADER_LEN + HELLO_ID_LEN
_HELLO_KEY_AT = _HELLO_DEVICE_AT + ID_LEN
_HELLO_TRUST_AT = _HELLO_KEY_AT + PUBLIC_KEY_LEN
"""Offset of a HELLO's trust level length byte; the fields before it are fixed-size."""
_TRUST_BY_UTF8 = {t.value.encode(): t for t in TrustLevel}
_U8 = [bytes((i,)) for i in range(256)]


def encode(msg: Message) -> bytes:
    """The datagram for `msg`."""
    match msg:
        case Hello():
            w = (
                _header(MessageType.HELLO)
                .fixed(msg.hello_id, HELLO_ID_LEN)
                .fixed(id_bytes(msg.device_id), ID_LEN)
                .fixed(msg.device_public_key, PUBLIC_KEY_LEN)
                .text(msg.trust_level.value)
                .u8(msg.rounds)
                .u8(len(msg.cookie))
                .fixed(msg.cookie, len(msg.cookie))
            )
            unpadded = len(w.getvalue()) + 2
            pad = max(0, HELLO_MIN_BYTES - unpadded)
            w.u16(pad).fixed(bytes(pad), pad)
        case SessionAccept():
            w = (
                _header(MessageType.SESSION)
                .fixed(msg.hello_id, HELLO_ID_LEN)
                .fixed(msg.session_id, SESSION_ID_LEN)
                .text(msg.landmark_id)
                .fixed(id_bytes(msg.landmark_key_id), ID_LEN)
                .u8(msg.rounds)
            )
        case Challenge():
            w = (
                _header(MessageType.CHALLENGE)
                .fixed(msg.session_id, SESSION_ID_LEN)
                .u8(msg.round_no)
                .fixed(msg.nonce, NONCE_LEN)
            )
        case Response():
            w = (
                _header(MessageType.RESPONSE)
                .fixed(msg.session_id, SESSION_ID_LEN)
                .u8(msg.round_no)
                .fixed(msg.signature, SIGNATURE_LEN)
            )
        case RecordMessage():
            w = _header(MessageType.RECORD).fixed(msg.session_id, SESSION_ID_LEN)
            w.u16(len(msg.record)).fixed(msg.record, len(msg.record))
        case Reject():
            w = _header(MessageType.REJECT).u8(len(msg.ref)).fixed(msg.ref, len(msg.ref))
            w.u8(msg.code).text(msg.detail)
        case Retry():
            w = _header(MessageType.RETRY).fixed(msg.hello_id, HELLO_ID_LEN)
            w.u8(len(msg.cookie)).fixed(msg.cookie, len(msg.cookie))
    return w.getvalue()


def encode_retry(hello_id: bytes, cookie: bytes) -> bytes:
    """encode(Retry(hello_id, cookie)) for a landmark's own hello_id and cookie (already of the
    right sizes), without building the message: one is sent per cookieless HELLO."""
    return b"".join((_RETRY_HEADER, hello_id, _U8[len(cookie)], cookie))


_V1_HELLO_HEADER = MAGIC + bytes((1, MessageType.HELLO))
_V1_REJECT_HEADER = MAGIC + bytes((1, MessageType.REJECT))
VERSION_REJECT_DETAIL = f"protocol version {PROTOCOL_VERSION} required"


def encode_version_reject(data: bytes) -> bytes | None:
    """For a datagram that is a version-1 HELLO (by header and size), the version-1 REJECT
    (BAD_REQUEST) that tells its agent to upgrade; None for anything else. Stateless, and at
    most 42 bytes against the HELLO's 360 or more."""
    if data[:HEADER_LEN] != _V1_HELLO_HEADER or not (
        HELLO_MIN_BYTES <= len(data) <= MAX_DATAGRAM_BYTES
    ):
        return None
    detail = VERSION_REJECT_DETAIL.encode()
    return b"".join(
        (
            _V1_REJECT_HEADER,
            _U8[HELLO_ID_LEN],
            data[HEADER_LEN : HEADER_LEN + HELLO_ID_LEN],
            _U8[RejectCode.BAD_REQUEST],
            _U8[len(detail)],
            detail,
        )
    )


def encode_session_accept(
    hello_id: bytes, session_id: bytes, landmark_id: str, landmark_key_id: str, rounds: int
) -> bytes:
    """encode(SessionAccept(...)): the same checks and bytes, without building the message.

    A landmark sends one per session, always with its own id and key, so their encoding is
    made (and checked) once per landmark.
    """
    _check_len("hello_id", hello_id, HELLO_ID_LEN)
    _check_len("session_id", session_id, SESSION_ID_LEN)
    landmark = _landmark_fields(landmark_id, landmark_key_id)
    _check_rounds(rounds)
    return b"".join((_SESSION_HEADER, hello_id, session_id, landmark, _U8[rounds]))


@lru_cache(maxsize=16)
def _landmark_fields(landmark_id: str, landmark_key_id: str) -> bytes:
    """The landmark_id and key id fields of a SESSION, encoded and checked as encode() does."""
    template = SessionAccept(
        bytes(HELLO_ID_LEN), bytes(SESSION_ID_LEN), landmark_id, landmark_key_id, 1
    )
    return encode(template)[HEADER_LEN + HELLO_ID_LEN + SESSION_ID_LEN : -1]


def encode_record_message(session_id: bytes, record: bytes) -> bytes:
    """encode(RecordMessage(session_id, record)): the same checks and bytes, without building
    the message (a landmark sends one per session)."""
    _check_len("session_id", session_id, SESSION_ID_LEN)
    if not 1 <= len(record) <= MAX_DATAGRAM_BYTES - 64:
        raise ValueError("record bytes out of range")
    return b"".join((_RECORD_HEADER, session_id, len(record).to_bytes(2, "big"), record))


class UnsupportedVersion(DecodeError):
    """A well-framed datagram of another protocol version."""


def decode(data: bytes) -> Message:
    """Parse one datagram strictly. Raises DecodeError (never anything else) on bad input."""
    if data[:HEADER_LEN] == _HELLO_HEADER:
        return _decode_hello(data)
    if len(data) > MAX_DATAGRAM_BYTES:
        raise DecodeError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM_BYTES}")
    r = Reader(data)
    if r.fixed(2) != MAGIC:
        raise DecodeError("bad magic")
    version = r.u8()
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(f"protocol version {version}, this side speaks {PROTOCOL_VERSION}")
    kind = r.u8()
    try:
        msg = _decode_body(kind, r)
    except ValueError as exc:  # includes DecodeError
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"invalid field: {exc}") from None
    r.end()
    return msg


def _decode_hello(data: bytes) -> Hello:
    """decode() of a datagram with a HELLO header, by offsets instead of a Reader.

    The landmark decodes one or two per session, and every HELLO of a flood. Everything before
    the trust level is fixed-size, and the minimum length covers every offset up to the cookie
    length (at most 60 + 1 + 255 + 2), so those fields are slices of bytes known to be there;
    the cookie and padding lengths are checked against the datagram's size. Hello checks the
    fields as for any other message; this checks the framing. Accepts exactly what the
    field-by-field reading of docs/protocol.md accepts (tests/test_messages.py compares the two
    on arbitrary bytes).
    """
    size = len(data)
    if size > MAX_DATAGRAM_BYTES:
        raise DecodeError(f"datagram of {size} bytes exceeds {MAX_DATAGRAM_BYTES}")
    if size < HELLO_MIN_BYTES:
        raise DecodeError(f"hello shorter than {HELLO_MIN_BYTES} bytes (unpadded)")
    trust_end = _HELLO_TRUST_AT + 1 + data[_HELLO_TRUST_AT]
    trust_level = _TRUST_BY_UTF8.get(data[_HELLO_TRUST_AT + 1 : trust_end])
    if trust_level is None:
        raise DecodeError("invalid field: unknown trust level")
    cookie_at = trust_end + 2
    cookie_end = cookie_at + data[trust_end + 1]
    padding_at = cookie_end + 2
    if padding_at > size:
        raise DecodeError("truncated hello")
    padding_len = size - padding_at
    if int.from_bytes(data[cookie_end:padding_at], "big") != padding_len:
        raise DecodeError("hello padding length does not match the datagram")
    if data.count(0, padding_at) != padding_len:
        raise DecodeError("hello padding must be zero bytes")
    hello_id = data[HEADER_LEN:_HELLO_DEVICE_AT]
    device_id = data[_HELLO_DEVICE_AT:_HELLO_KEY_AT].hex()
    device_public_key = data[_HELLO_KEY_AT:_HELLO_TRUST_AT]
    try:
        return Hello(
            hello_id,
            device_id,
            device_public_key,
            trust_level,
            data[trust_end],
            data[cookie_at:cookie_end],
        )
    except ValueError as exc:
        raise DecodeError(f"invalid field: {exc}") from None


def _decode_body(kind: int, r: Reader) -> Message:
    if kind == MessageType.SESSION:
        return SessionAccept(
            hello_id=r.fixed(HELLO_ID_LEN),
            session_id=r.fixed(SESSION_ID_LEN),
            landmark_id=r.text(),
            landmark_key_id=r.fixed(ID_LEN).hex(),
            rounds=r.u8(),
        )
    if kind == MessageType.CHALLENGE:
        return Challenge(r.fixed(SESSION_ID_LEN), r.u8(), r.fixed(NONCE_LEN))
    if kind == MessageType.RESPONSE:
        return Response(r.fixed(SESSION_ID_LEN), r.u8(), r.fixed(SIGNATURE_LEN))
    if kind == MessageType.RECORD:
        session_id = r.fixed(SESSION_ID_LEN)
        return RecordMessage(session_id, r.fixed(r.u16()))
    if kind == MessageType.REJECT:
        ref = r.fixed(r.u8())
        return Reject(ref, RejectCode(r.u8()), r.text())
    if kind == MessageType.RETRY:
        hello_id = r.fixed(HELLO_ID_LEN)
        return Retry(hello_id, r.fixed(r.u8()))
    raise DecodeError(f"unknown message type {kind}")
