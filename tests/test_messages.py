from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightfence.crypto.identity import TrustLevel
from lightfence.protocol import messages as m
from lightfence.protocol.wire import DecodeError

ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
names = st.text(min_size=1, max_size=60)

messages = st.one_of(
    st.builds(
        m.Hello,
        st.binary(min_size=8, max_size=8),
        ids,
        st.binary(min_size=32, max_size=32),
        st.sampled_from(list(TrustLevel)),
        st.integers(1, 64),
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
    raw[2] = 2
    with pytest.raises(m.UnsupportedVersion):
        m.decode(bytes(raw))
    with pytest.raises(DecodeError, match="exceeds"):
        m.decode(b"LF\x01\x03" + bytes(2000))


def test_building_an_invalid_message_is_a_local_error() -> None:
    with pytest.raises(ValueError):
        m.Challenge(b"short", 0, b"n" * 32)
    with pytest.raises(ValueError):
        m.Hello(b"h" * 8, "not-hex", b"k" * 32, TrustLevel.SOFTWARE, 10)
    with pytest.raises(ValueError):
        m.Hello(b"h" * 8, "00" * 16, b"k" * 32, TrustLevel.SOFTWARE, 0)
