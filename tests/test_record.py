from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightfence.protocol.record import MeasurementRecord, RecordError, verify
from lightfence.protocol.wire import DecodeError
from record_factory import make_signed_record, seeded_key

LANDMARK = seeded_key("landmark")
DEVICE = seeded_key("device")


def test_signed_record_verifies_with_both_public_keys() -> None:
    rec = make_signed_record(LANDMARK, DEVICE)
    verify(rec, LANDMARK.public_bytes, DEVICE.public_bytes)
    assert rec.min_rtt_ns == 1_200_000
    assert rec.min_rtt_ms == 1.2
    assert rec.fastest_round == 1


def test_wrong_keys_are_rejected_with_a_reason() -> None:
    rec = make_signed_record(LANDMARK, DEVICE)
    other = seeded_key("other")
    with pytest.raises(RecordError, match="landmark key"):
        verify(rec, other.public_bytes, DEVICE.public_bytes)
    with pytest.raises(RecordError, match="device key"):
        verify(rec, LANDMARK.public_bytes, other.public_bytes)


@pytest.mark.parametrize(
    "change",
    [
        {"rtts_ns": (1_500_000, 1_000_000, 1_300_000)},
        {"landmark_id": "fra2"},
        {"measured_at_unix_ns": 1},
        {"session_id": b"T" * 16},
        {"rounds_sent": 4},
    ],
)
def test_any_changed_field_breaks_the_landmark_signature(change: dict[str, object]) -> None:
    rec = dataclasses.replace(make_signed_record(LANDMARK, DEVICE), **change)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="landmark signature"):
        verify(rec, LANDMARK.public_bytes, DEVICE.public_bytes)


def test_landmark_cannot_claim_a_round_the_device_did_not_sign() -> None:
    # A landmark (or anyone with its key) re-signing a record with another nonce or round still
    # fails: the device signature covers the nonce, the round, the session and both ids.
    rec = make_signed_record(LANDMARK, DEVICE)
    for change in ({"fastest_round": 0}, {"fastest_nonce": bytes(32)}, {"landmark_id": "x"}):
        forged = dataclasses.replace(rec, **change).signed_by(LANDMARK)
        with pytest.raises(RecordError, match="device signature"):
            verify(forged, LANDMARK.public_bytes, DEVICE.public_bytes)


def test_binary_and_json_forms_round_trip() -> None:
    rec = make_signed_record(LANDMARK, DEVICE)
    assert MeasurementRecord.from_bytes(rec.to_bytes()) == rec
    d = json.loads(json.dumps(rec.to_json_dict()))
    assert MeasurementRecord.from_json_dict(d) == rec
    assert MeasurementRecord.from_json_dict(d).signed_bytes() == rec.signed_bytes()
    assert d["measured_at_utc"].endswith("+00:00")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("rtts_ns", [1, True], "rtt_ns"),
        ("rtts_ns", [], "between 1 and"),
        ("rtts_ns", [1.5], "rtt_ns"),
        ("min_rtt_ns", 5, "minimum"),
        ("session_id", "AB" * 16, "lowercase"),
        ("device_id", "zz", "device_id"),
        ("trust_level", "root", "invalid record"),
        ("extra", 1, "unknown"),
        ("rounds_sent", 0, "rounds_sent"),
        ("version", 2, "version"),
    ],
)
def test_json_decoding_is_strict(key: str, value: object, match: str) -> None:
    d = make_signed_record(LANDMARK, DEVICE).to_json_dict()
    d[key] = value
    with pytest.raises(RecordError, match=match):
        MeasurementRecord.from_json_dict(d)


def test_missing_json_field_is_an_error() -> None:
    d = make_signed_record(LANDMARK, DEVICE).to_json_dict()
    del d["device_signature"]
    with pytest.raises(RecordError, match="missing"):
        MeasurementRecord.from_json_dict(d)


@given(st.binary(max_size=1200))
def test_binary_decoding_never_raises_anything_but_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        MeasurementRecord.from_bytes(data)


@given(st.data())
def test_every_truncation_or_bit_flip_of_a_record_is_caught(data: st.DataObject) -> None:
    rec = make_signed_record(LANDMARK, DEVICE)
    raw = bytearray(rec.to_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    try:
        decoded = MeasurementRecord.from_bytes(bytes(raw))
    except DecodeError:
        return
    with pytest.raises(RecordError):
        verify(decoded, LANDMARK.public_bytes, DEVICE.public_bytes)
    with pytest.raises(DecodeError):
        MeasurementRecord.from_bytes(rec.to_bytes()[:pos])
