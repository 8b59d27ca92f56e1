from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.model.trust import TrustLevel
from lightfence.protocol.challenge import ID_LEN, id_bytes
from lightfence.protocol.record import (
    MAX_ROUNDS,
    MAX_RTT_NS,
    RECORD_DOMAIN,
    RECORD_VERSION,
    MeasurementRecord,
    RecordError,
    TimestampSource,
    verify,
)
from lightfence.protocol.wire import DecodeError, Writer
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


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_measured_at_utc_is_the_signed_time_to_the_microsecond(unix_ns: int) -> None:
    from datetime import UTC, datetime

    from lightfence.protocol.record import utc_text

    seconds, rest_ns = divmod(unix_ns, 10**9)
    exact = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest_ns // 1000)
    assert utc_text(unix_ns) == exact.isoformat(timespec="microseconds")


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_measured_at_is_the_signed_time_to_the_microsecond(unix_ns: int) -> None:
    """`lightfence verify` prints `measured_at`: the same instant as the record's own text."""
    from lightfence.protocol.record import utc_text

    rec = dataclasses.replace(make_signed_record(LANDMARK, DEVICE), measured_at_unix_ns=unix_ns)
    assert rec.measured_at.isoformat(timespec="microseconds") == utc_text(unix_ns)


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


# --- the fast canonical encoding and checks against their field-by-field forms ------------------


def reference_signed_bytes(rec: MeasurementRecord) -> bytes:
    """The canonical bytes written field by field with wire.Writer (docs/protocol.md)."""
    return (
        Writer()
        .fixed(RECORD_DOMAIN, len(RECORD_DOMAIN))
        .u8(rec.version)
        .text(rec.landmark_id)
        .fixed(id_bytes(rec.landmark_key_id), ID_LEN)
        .fixed(id_bytes(rec.device_id), ID_LEN)
        .fixed(id_bytes(rec.device_key_id), ID_LEN)
        .text(rec.trust_level.value)
        .fixed(rec.session_id, 16)
        .u8(rec.rounds_sent)
        .u8(len(rec.rtts_ns))
        .u64s(rec.rtts_ns)
        .u64(min(rec.rtts_ns))
        .u8(rec.fastest_round)
        .fixed(rec.fastest_nonce, 32)
        .fixed(rec.device_signature, 64)
        .text(rec.timestamp_source.value)
        .u64(rec.measured_at_unix_ns)
        .getvalue()
    )


def reference_check_int(name: str, v: object, lo: int, hi: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise RecordError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")


def reference_checks(f: dict[str, Any]) -> None:
    """MeasurementRecord.__post_init__ as it was before its fast paths, one field at a time."""
    if f["version"] != RECORD_VERSION:
        raise RecordError(f"unsupported record version {f['version']}")
    if not f["landmark_id"] or len(f["landmark_id"].encode()) > 255:
        raise RecordError("landmark_id must be 1 to 255 UTF-8 bytes")
    for name in ("landmark_key_id", "device_id", "device_key_id"):
        try:
            id_bytes(f[name])
        except (ValueError, TypeError):
            raise RecordError(f"{name} must be {2 * ID_LEN} lowercase hex digits") from None
    if not isinstance(f["trust_level"], TrustLevel):
        raise RecordError("trust_level must be a TrustLevel")
    if not isinstance(f["timestamp_source"], TimestampSource):
        raise RecordError("timestamp_source must be a TimestampSource")
    if len(f["session_id"]) != 16:
        raise RecordError("session_id must be 16 bytes")
    reference_check_int("rounds_sent", f["rounds_sent"], 1, MAX_ROUNDS)
    if not 1 <= len(f["rtts_ns"]) <= f["rounds_sent"]:
        raise RecordError("a record needs between 1 and rounds_sent valid RTTs")
    for rtt in f["rtts_ns"]:
        reference_check_int("rtt_ns", rtt, 1, MAX_RTT_NS)
    reference_check_int("fastest_round", f["fastest_round"], 0, f["rounds_sent"] - 1)
    if len(f["fastest_nonce"]) != 32:
        raise RecordError("fastest_nonce must be 32 bytes")
    if len(f["device_signature"]) != 64:
        raise RecordError("device_signature must be 64 bytes")
    reference_check_int("measured_at_unix_ns", f["measured_at_unix_ns"], 0, 2**63 - 1)
    if len(f["landmark_signature"]) not in (0, 64):
        raise RecordError("landmark_signature must be 64 bytes")


class Small(IntEnum):
    """An int subclass other than bool: the checks accept it, as they always did."""

    ONE = 1
    THREE = 3


hex_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
odd_ids = st.one_of(
    hex_ids,
    hex_ids.map(str.upper),
    hex_ids.map(lambda s: s[:-1]),
    hex_ids.map(lambda s: s + "0"),
    hex_ids.map(lambda s: " " + s[1:]),
    hex_ids.map(lambda s: s[:31] + "g"),
    st.text(max_size=34),
    st.binary(min_size=16, max_size=16),
    st.none(),
)
odd_id_triples = st.one_of(
    st.tuples(odd_ids, odd_ids, odd_ids),
    # Valid hex all together, but not split 32/32/32.
    st.tuples(hex_ids, hex_ids, hex_ids).map(lambda t: (t[0][:-1], t[0][-1] + t[1], t[2])),
    st.tuples(hex_ids, hex_ids, hex_ids).map(lambda t: (t[0], t[1] + t[2][:2], t[2][2:])),
)


def edge_values(lo: int, hi: int) -> list[Any]:
    """Values at and just past an integer field's bounds, and ints that are not plain ints."""
    return [lo - 1, lo, hi, hi + 1, True, False, Small.ONE, Small.THREE, float(lo), float(hi), "1"]


def edges(lo: int, hi: int) -> st.SearchStrategy[Any]:
    return st.sampled_from(edge_values(lo, hi))


@st.composite
def record_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Constructor arguments: valid, but for one or two fields drawn from their edge cases."""
    odd = draw(st.sets(st.sampled_from(FIELD_GROUPS), max_size=2))

    def pick(group: str, valid: st.SearchStrategy[Any], edge: st.SearchStrategy[Any]) -> Any:
        return draw(edge if group in odd else valid)

    rounds = pick("rounds_sent", st.integers(1, MAX_ROUNDS), edges(1, MAX_ROUNDS))
    bound = rounds if type(rounds) is int and 1 <= rounds <= MAX_ROUNDS else MAX_ROUNDS
    rtt = st.integers(1, MAX_RTT_NS)
    ids = pick("ids", st.tuples(hex_ids, hex_ids, hex_ids), odd_id_triples)
    return {
        "landmark_id": pick(
            "landmark_id",
            st.text(min_size=1, max_size=40),
            st.one_of(st.text(max_size=2), st.sampled_from(["é" * 127, "é" * 128])),
        ),
        "landmark_key_id": ids[0],
        "device_id": ids[1],
        "device_key_id": ids[2],
        "trust_level": pick(
            "trust_level", st.sampled_from(list(TrustLevel)), st.sampled_from(["software", None])
        ),
        "session_id": pick(
            "session_id", st.binary(min_size=16, max_size=16), st.binary(min_size=15, max_size=17)
        ),
        "rounds_sent": rounds,
        "rtts_ns": tuple(
            pick(
                "rtts_ns",
                st.lists(rtt, min_size=1, max_size=bound),
                st.lists(st.one_of(rtt, edges(1, MAX_RTT_NS)), max_size=bound + 1),
            )
        ),
        "fastest_round": pick("fastest_round", st.integers(0, bound - 1), edges(0, bound - 1)),
        "fastest_nonce": pick(
            "fastest_nonce",
            st.binary(min_size=32, max_size=32),
            st.binary(min_size=31, max_size=33),
        ),
        "device_signature": pick(
            "device_signature",
            st.binary(min_size=64, max_size=64),
            st.binary(min_size=63, max_size=65),
        ),
        "timestamp_source": pick(
            "timestamp_source",
            st.sampled_from(list(TimestampSource)),
            st.sampled_from(["kernel", TrustLevel.SOFTWARE, None]),
        ),
        "measured_at_unix_ns": pick(
            "measured_at_unix_ns", st.integers(0, 2**63 - 1), edges(0, 2**63 - 1)
        ),
        "landmark_signature": pick(
            "landmark_signature",
            st.sampled_from([b"", b"s" * 64]),
            st.sampled_from([b"s" * 63, b"s" * 65, b"s"]),
        ),
        "version": pick("version", st.just(RECORD_VERSION), st.sampled_from([0, 2, True])),
    }


FIELD_GROUPS = [
    "landmark_id", "ids", "trust_level", "session_id", "rounds_sent", "rtts_ns", "fastest_round",
    "fastest_nonce", "device_signature", "timestamp_source", "measured_at_unix_ns",
    "landmark_signature", "version",
]  # fmt: skip


def outcome(check: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    try:
        check()
    except Exception as exc:
        return type(exc), str(exc)
    return None


def factory_fields() -> dict[str, Any]:
    rec = make_signed_record(LANDMARK, DEVICE)  # 3 rounds, all answered
    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}


H1, H2 = "0123456789abcdef" * 2, "fedcba9876543210" * 2
SINGLE_EDGES = [
    *[("rounds_sent", v) for v in [*edge_values(1, MAX_ROUNDS), 2, 3, 4]],
    *[("fastest_round", v) for v in edge_values(0, 2)],
    *[("measured_at_unix_ns", v) for v in edge_values(0, 2**63 - 1)],
    *[("rtts_ns", rtts) for v in edge_values(1, MAX_RTT_NS) for rtts in [(v,), (5, v), (v, 5, 6)]],
    ("rtts_ns", ()),
    ("rtts_ns", (1, 2, 3, 4)),
    *[
        (name, v)
        for name in ("landmark_key_id", "device_id", "device_key_id")
        for v in [H1, H1.upper(), H1[:-1], H1 + "0", " " + H1[1:], H1[:31] + "g", "", None, b"x"]
    ],
    ("ids", (H1[:-1], H1[-1] + H2, H1)),
    ("ids", (H1, H2 + H1[:2], H1[2:])),
    ("ids", (H1, H2, H1.upper())),
]


@pytest.mark.parametrize(("name", "value"), SINGLE_EDGES)
def test_record_checks_judge_each_edge_as_the_field_by_field_checks(name: str, value: Any) -> None:
    fields = factory_fields()
    if name == "ids":
        fields["landmark_key_id"], fields["device_id"], fields["device_key_id"] = value
    else:
        fields[name] = value
    expected = outcome(lambda: reference_checks(fields))
    assert outcome(lambda: MeasurementRecord(**fields)) == expected


@settings(max_examples=1000)
@given(record_fields())
def test_record_checks_reject_exactly_what_the_field_by_field_checks_reject(
    fields: dict[str, Any],
) -> None:
    expected = outcome(lambda: reference_checks(fields))
    assert outcome(lambda: MeasurementRecord(**fields)) == expected


valid_records = st.builds(
    MeasurementRecord,
    landmark_id=st.text(min_size=1, max_size=60),
    landmark_key_id=hex_ids,
    device_id=hex_ids,
    device_key_id=hex_ids,
    trust_level=st.sampled_from(list(TrustLevel)),
    session_id=st.binary(min_size=16, max_size=16),
    rounds_sent=st.just(MAX_ROUNDS),
    rtts_ns=st.lists(st.integers(1, MAX_RTT_NS), min_size=1, max_size=MAX_ROUNDS).map(tuple),
    fastest_round=st.integers(0, MAX_ROUNDS - 1),
    fastest_nonce=st.binary(min_size=32, max_size=32),
    device_signature=st.binary(min_size=64, max_size=64),
    timestamp_source=st.sampled_from(list(TimestampSource)),
    measured_at_unix_ns=st.integers(0, 2**63 - 1),
)


@given(valid_records)
def test_canonical_bytes_are_the_field_by_field_encoding(rec: MeasurementRecord) -> None:
    assert rec.signed_bytes() == reference_signed_bytes(rec)


def test_canonical_bytes_of_the_factory_record() -> None:
    rec = make_signed_record(LANDMARK, DEVICE)
    assert rec.signed_bytes() == reference_signed_bytes(rec)
    assert MeasurementRecord.from_bytes(rec.to_bytes()).signed_bytes() == rec.signed_bytes()


def test_record_init_takes_the_dataclass_fields_in_order() -> None:
    # MeasurementRecord writes its own __init__ (one dict fill instead of a frozen setattr per
    # field); a field added to the class but not to __init__ would be silently left unset.
    params = list(inspect.signature(MeasurementRecord.__init__).parameters.values())[1:]
    fields = dataclasses.fields(MeasurementRecord)
    assert [(p.name, p.annotation, p.default) for p in params] == [
        (f.name, f.type, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in fields
    ]
    rec = make_signed_record(LANDMARK, DEVICE)
    assert set(vars(rec)) >= {f.name for f in fields}
    assert dataclasses.replace(rec) == rec


def test_an_error_quoting_a_huge_field_is_one_bounded_line() -> None:
    # The message reaches logs, 422 answers and rejection rows; the field is a stranger's.
    from lightfence.protocol.record import MAX_ERROR_CHARS, RecordError

    for value in ("Z" * 100_000 + "\nforged log line", "\x1b[31m" * 1000):
        text = str(RecordError(f"trust_level {value!r} is not one of key, gpu"))
        assert len(text) <= MAX_ERROR_CHARS and text.isprintable()
    assert str(RecordError("device_id must be 32 lowercase hex digits")) == (
        "device_id must be 32 lowercase hex digits"
    )


@given(valid_records)
def test_json_text_is_the_json_dict(rec: MeasurementRecord) -> None:
    # Stream workers store to_json_text; bundles, the API and re-verification read it back as
    # the dict: any landmark id (quotes, control characters, non-ASCII) must survive.
    assert json.loads(rec.to_json_text()) == rec.to_json_dict()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@settings(max_examples=1000)
@given(st.data())
def test_json_decoding_takes_the_fast_path_only_for_what_the_checked_path_accepts(
    data: st.DataObject,
) -> None:
    # from_json_dict first tries a path for plain, canonical input and falls back to the
    # field-by-field one: with any field changed to anything, the result (record or error
    # message) is the field-by-field path's.
    from lightfence.protocol.record import _from_json_checked

    doc = make_signed_record(LANDMARK, DEVICE).to_json_dict()
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(doc)))
        value = data.draw(
            JSON_VALUES
            | st.sampled_from(
                [doc[key], str(doc[key]).upper(), " " + str(doc[key]), 1, 0, 2**64, True, 255]
            )
            | st.text(alphabet="0123456789abcdef", max_size=130)
        )
        doc[key] = value

    def checked() -> MeasurementRecord:
        rtts = doc["rtts_ns"]
        if not isinstance(rtts, list) or len(rtts) > MAX_ROUNDS:
            raise RecordError(f"rtts_ns must be a list of at most {MAX_ROUNDS} integers")
        rec = _from_json_checked(MeasurementRecord, doc, rtts)
        if "min_rtt_ns" in doc and doc["min_rtt_ns"] != rec.min_rtt_ns:
            raise RecordError("min_rtt_ns is not the minimum of rtts_ns")
        if not rec.landmark_signature:
            raise RecordError("landmark_signature is empty: a record is signed by its landmark")
        return rec

    got, want = outcome(lambda: MeasurementRecord.from_json_dict(doc)), outcome(checked)
    assert got == want
    if got is None:
        assert MeasurementRecord.from_json_dict(doc) == checked()


MESSAGE_FORMS = ("built", "ascii", "unicode", "spaced", "reordered", "other_utc", "no_utc")


@given(
    valid_records.map(lambda r: dataclasses.replace(r, landmark_signature=b"\x01" * 64)),
    st.sampled_from(MESSAGE_FORMS),
)
def test_a_message_decodes_to_its_record_and_the_body_it_stores_is_the_built_one(
    rec: MeasurementRecord, form: str
) -> None:
    """from_json_message keeps an orjson text for to_json_text (the body a stream worker stores)
    only when it is the text to_json_text would build: whatever form the message came in."""
    built = rec.to_json_text()
    doc = rec.to_json_dict()
    if form == "reordered":
        doc = dict(reversed(doc.items()))
    elif form == "other_utc":
        doc["measured_at_utc"] = "1999-12-31T23:59:59.999999+00:00"  # informational: accepted
    elif form == "no_utc":
        del doc["measured_at_utc"]
    compact = {"separators": (",", ":")}
    message = {
        "built": built,
        "ascii": json.dumps(doc, **compact),  # type: ignore[arg-type]
        "unicode": json.dumps(doc, ensure_ascii=False, **compact),  # type: ignore[arg-type]
        "spaced": json.dumps(doc, indent=1),
    }.get(form, json.dumps(doc))
    got = MeasurementRecord.from_json_message(message.encode())
    assert got == rec
    assert got.to_json_text() == built


def test_a_landmarks_message_keeps_its_text_and_a_true_min_rtt_does_not() -> None:
    rec = make_signed_record(LANDMARK, DEVICE, rtts_ns=(1, 5))
    got = MeasurementRecord.from_json_message(rec.to_json_text().encode())
    assert got.__dict__.get("_json_text") == rec.to_json_text()  # what every landmark sends
    # `true` == 1 passes min_rtt_ns's decode check; the stored body must still say 1.
    doc = rec.to_json_dict() | {"min_rtt_ns": True}
    got = MeasurementRecord.from_json_message(json.dumps(doc).encode())
    assert "_json_text" not in got.__dict__ and '"min_rtt_ns":1,' in got.to_json_text()
