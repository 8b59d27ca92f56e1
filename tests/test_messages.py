from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.crypto.keys import PUBLIC_KEY_LEN
from lightfence.model.trust import TrustLevel
from lightfence.protocol import messages as m
from lightfence.protocol.challenge import ID_LEN
from lightfence.protocol.wire import DecodeError, Reader

ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
names = st.text(min_size=1, max_size=60)

valid_hellos = st.builds(
    m.Hello,
    st.binary(min_size=8, max_size=8),
    ids,
    st.binary(min_size=32, max_size=32),
    st.sampled_from(list(TrustLevel)),
    st.integers(1, 64),
    st.one_of(st.just(b""), st.binary(min_size=1, max_size=m.MAX_COOKIE_BYTES)),
)

messages = st.one_of(
    valid_hellos,
    st.builds(
        m.Retry,
        st.binary(min_size=8, max_size=8),
        st.binary(min_size=1, max_size=m.MAX_COOKIE_BYTES),
    ),
    st.builds(
        m.SessionAccept,
        st.binary(min_size=8, max_size=8),
        st.binary(min_size=16, max_size=16),
        names,
        ids,
        st.integers(1, 64),
    ),
    st.builds(
        m.Challenge,
        st.binary(min_size=16, max_size=16),
        st.integers(0, 63),
        st.binary(min_size=32, max_size=32),
    ),
    st.builds(
        m.Response,
        st.binary(min_size=16, max_size=16),
        st.integers(0, 63),
        st.binary(min_size=64, max_size=64),
    ),
    st.builds(
        m.RecordMessage, st.binary(min_size=16, max_size=16), st.binary(min_size=1, max_size=900)
    ),
    st.builds(
        m.Reject,
        st.sampled_from([b"h" * 8, b"s" * 16]),
        st.sampled_from(list(m.RejectCode)),
        st.text(max_size=30),
    ),
)


@given(messages)
def test_every_message_round_trips(msg: m.Message) -> None:
    data = m.encode(msg)
    assert len(data) <= m.MAX_DATAGRAM_BYTES
    assert m.decode(data) == msg


@given(messages, st.data())
def test_truncated_or_extended_messages_are_rejected(msg: m.Message, data: st.DataObject) -> None:
    raw = m.encode(msg)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        m.decode(raw[:cut])
    with pytest.raises(DecodeError):
        m.decode(raw + data.draw(st.binary(min_size=1, max_size=8)))


@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        m.decode(data)


@given(messages, st.data())
def test_mutated_messages_raise_only_decode_errors(msg: m.Message, data: st.DataObject) -> None:
    raw = bytearray(m.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        m.decode(bytes(raw))


def test_other_versions_and_oversized_datagrams_are_named() -> None:
    raw = bytearray(m.encode(m.Challenge(b"s" * 16, 0, b"n" * 32)))
    raw[2] = 1
    with pytest.raises(m.UnsupportedVersion):
        m.decode(bytes(raw))
    with pytest.raises(DecodeError, match="exceeds"):
        m.decode(b"LF\x02\x03" + bytes(2000))


def test_building_an_invalid_message_is_a_local_error() -> None:
    with pytest.raises(ValueError):
        m.Challenge(b"short", 0, b"n" * 32)
    with pytest.raises(ValueError):
        m.Hello(b"h" * 8, "not-hex", b"k" * 32, TrustLevel.SOFTWARE, 10)
    with pytest.raises(ValueError):
        m.Hello(b"h" * 8, "00" * 16, b"k" * 32, TrustLevel.SOFTWARE, 0)


# --- the HELLO decoder against a field-by-field reading of docs/protocol.md ---------------------


def reference_decode_hello(data: bytes) -> m.Hello:
    """A HELLO decoded field by field with wire.Reader, as decode() did before its fast path."""
    if len(data) > m.MAX_DATAGRAM_BYTES:
        raise DecodeError("oversized")
    if len(data) < m.HELLO_MIN_BYTES:
        raise DecodeError("short")
    r = Reader(data)
    if r.fixed(m.HEADER_LEN) != m.header(m.MessageType.HELLO):
        raise DecodeError("not a hello")
    try:
        hello = m.Hello(
            hello_id=r.fixed(m.HELLO_ID_LEN),
            device_id=r.fixed(ID_LEN).hex(),
            device_public_key=r.fixed(PUBLIC_KEY_LEN),
            trust_level=TrustLevel(r.text()),
            rounds=r.u8(),
            cookie=r.fixed(r.u8()),
        )
    except DecodeError:
        raise
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    if any(r.fixed(r.u16())):
        raise DecodeError("padding")
    r.end()
    return hello


def same_outcome(data: bytes) -> None:
    try:
        expected: m.Message | None = reference_decode_hello(data)
    except DecodeError:
        expected = None
    try:
        got: m.Message | None = m.decode(data)
    except DecodeError:
        got = None
    assert got == expected
    if got is not None:
        assert type(got.trust_level) is TrustLevel  # type: ignore[union-attr]


HELLO_HEADER = m.header(m.MessageType.HELLO)
near_miss_trust = st.one_of(
    st.sampled_from([b"", b"Software", b"gpu-bound\x00", b"attest", b"\xff\xfe", b"gpu_bound"]),
    st.sampled_from([t.value.upper().encode() for t in TrustLevel]),
    st.binary(max_size=255),
)
HELLO_DEFECTS = (
    "none",
    "trust",
    "rounds",
    "cookie",
    "size",
    "padding_length",
    "padding",
    "trailing",
    "cut",
)


@st.composite
def hello_like(draw: st.DrawFn) -> bytes:
    """A well-formed HELLO of any allowed size with at most one defect at or past an edge."""
    defect = draw(st.sampled_from(HELLO_DEFECTS))
    trust = draw(st.sampled_from([t.value.encode() for t in TrustLevel]))
    if defect == "trust":
        trust = draw(near_miss_trust)
    rounds = draw(st.integers(0, 255) if defect == "rounds" else st.integers(1, 64))
    cookie_len = draw(
        st.integers(0, 255) if defect == "cookie" else st.integers(0, m.MAX_COOKIE_BYTES)
    )
    size = draw(st.integers(m.HELLO_MIN_BYTES, m.MAX_DATAGRAM_BYTES))
    if defect == "size":
        size = draw(
            st.one_of(
                st.integers(m.HELLO_MIN_BYTES - 3, m.HELLO_MIN_BYTES - 1),
                st.integers(m.MAX_DATAGRAM_BYTES + 1, m.MAX_DATAGRAM_BYTES + 3),
                st.integers(0, 2000),
            )
        )
    head = (
        HELLO_HEADER
        + draw(st.binary(min_size=56, max_size=56))  # hello_id, device_id, public key
        + bytes((len(trust),))
        + trust
        + bytes((rounds,))
        + bytes((cookie_len,))
        + draw(st.binary(min_size=cookie_len, max_size=cookie_len))
    )
    padding = bytearray(max(0, size - len(head) - 2))
    padding_length = len(padding)
    if defect == "padding_length":
        padding_length = draw(
            st.one_of(st.integers(0, 0xFFFF), st.integers(-2, 2).map(lambda d: len(padding) + d))
        )
        padding_length = min(max(padding_length, 0), 0xFFFF)
    if defect == "padding" and padding:
        padding[draw(st.integers(0, len(padding) - 1))] = draw(st.integers(1, 255))
    data = head + padding_length.to_bytes(2, "big") + bytes(padding)
    if defect == "trailing":
        data += draw(st.binary(min_size=1, max_size=3))
    if defect == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    return data


@given(st.binary(max_size=1300))
def test_hello_decoder_matches_the_reference_on_arbitrary_bytes(body: bytes) -> None:
    same_outcome(HELLO_HEADER + body)


@settings(max_examples=1000)
@given(hello_like())
def test_hello_decoder_matches_the_reference_near_the_format(data: bytes) -> None:
    same_outcome(data)


@given(valid_hellos, st.data())
def test_hello_decoder_matches_the_reference_on_mutated_hellos(
    hello: m.Hello, data: st.DataObject
) -> None:
    raw = bytearray(m.encode(hello))
    same_outcome(bytes(raw))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(m.HEADER_LEN, len(raw) - 1))] = data.draw(st.integers(0, 255))
    same_outcome(bytes(raw))
    cut = data.draw(st.integers(0, len(raw)))
    same_outcome(bytes(raw[:cut]) + data.draw(st.binary(max_size=900)))


def test_hello_decoder_edge_cases() -> None:
    hello = m.Hello(b"h" * 8, "ab" * 16, b"k" * 32, TrustLevel.GPU_BOUND, 64)
    raw = m.encode(hello)
    assert len(raw) == m.HELLO_MIN_BYTES
    rounds_at = 4 + 8 + 16 + 32 + 1 + len("gpu-bound")
    padding_at = rounds_at + 4

    def padded_to(size: int, head: bytes = raw[: rounds_at + 2]) -> bytes:
        return head + (size - padding_at).to_bytes(2, "big") + bytes(size - padding_at)

    assert padded_to(m.HELLO_MIN_BYTES) == raw
    cases = [
        raw,
        padded_to(m.MAX_DATAGRAM_BYTES),
        raw[:-1],
        raw + b"\x00",
        padded_to(m.HELLO_MIN_BYTES - 1),
        padded_to(m.MAX_DATAGRAM_BYTES + 1),
        raw[:rounds_at] + b"\x00" + raw[rounds_at + 1 :],  # rounds 0
        raw[:rounds_at] + b"\x41" + raw[rounds_at + 1 :],  # rounds 65
        raw[:-1] + b"\x01",  # non-zero padding
        padded_to(m.HELLO_MIN_BYTES, raw[:61] + b"GPU-BOUND" + raw[rounds_at : rounds_at + 2]),
        raw[: rounds_at + 1] + b"\x41" + raw[rounds_at + 2 :],  # cookie longer than the rest
        HELLO_HEADER + bytes(m.HELLO_MIN_BYTES - 4),  # empty trust level
    ]
    decoded = []
    for case in cases:
        same_outcome(case)
        with contextlib.suppress(DecodeError):
            decoded.append(m.decode(case))
    assert decoded == [hello, hello]


# --- the landmark's encoders against encode() ---------------------------------------------------


@given(
    st.binary(min_size=7, max_size=9),
    st.binary(min_size=15, max_size=17),
    st.one_of(names, st.just(""), st.just("x" * 256)),
    st.one_of(ids, st.just("AB" * 16), st.just("ab")),
    st.integers(-1, 66),
)
def test_session_accept_encoder_matches_encode(
    hello_id: bytes, session_id: bytes, landmark_id: str, key_id: str, rounds: int
) -> None:
    try:
        expected = m.encode(m.SessionAccept(hello_id, session_id, landmark_id, key_id, rounds))
    except ValueError:
        with pytest.raises(ValueError):
            m.encode_session_accept(hello_id, session_id, landmark_id, key_id, rounds)
        return
    assert m.encode_session_accept(hello_id, session_id, landmark_id, key_id, rounds) == expected


@given(st.binary(min_size=15, max_size=17), st.binary(max_size=1200))
def test_record_message_encoder_matches_encode(session_id: bytes, record: bytes) -> None:
    try:
        expected = m.encode(m.RecordMessage(session_id, record))
    except ValueError:
        with pytest.raises(ValueError):
            m.encode_record_message(session_id, record)
        return
    assert m.encode_record_message(session_id, record) == expected
