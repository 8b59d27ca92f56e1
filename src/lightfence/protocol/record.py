"""The measurement record: what a landmark measured, signed by the landmark.

A record says: landmark `landmark_id` (key `landmark_key_id`) ran `rounds_sent` timed rounds with
device `device_id` (key `device_key_id`) in session `session_id`; the valid answers took
`rtts_ns` on the landmark's clock; the fastest took `min_rtt_ns`, and here is the device's
signature over that round's challenge so anyone can check the device key really answered it.

Two encodings: canonical binary (`signed_bytes` is what the landmark signs; `to_bytes` adds the
signature and travels over UDP) and a JSON object (`to_json_dict`) for bundles and HTTP. Both
decode strictly; the JSON form round-trips to the same signed bytes.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from lightfence.crypto.keys import SIGNATURE_LEN, SigningKey, key_id, verify_signature
from lightfence.model.text import one_line
from lightfence.model.trust import TrustLevel
from lightfence.protocol.challenge import (
    ID_LEN,
    NONCE_LEN,
    SESSION_ID_LEN,
    challenge_signing_bytes,
    id_bytes,
)
from lightfence.protocol.wire import DecodeError, Reader, Writer

RECORD_DOMAIN = b"lightfence/record/v1\x00"
RECORD_VERSION = 1
MAX_ROUNDS = 64
"""Most rounds in one session; bounds a record to well under 1 kB."""
MAX_RTT_NS = 10 * 1_000_000_000
"""An RTT over 10 s proves nothing useful (a cap larger than the Earth); reject as malformed."""


class TimestampSource(StrEnum):
    """Which clock timed the rounds, so a reader knows the RTT's precision."""

    KERNEL = "kernel"
    """SO_TIMESTAMPING software TX and RX timestamps taken in the kernel."""
    MONOTONIC = "monotonic"
    """Fallback: CLOCK_MONOTONIC read in user space around send and receive (adds jitter)."""


MAX_ERROR_CHARS = 300
"""A RecordError quotes at most this much: its message reaches logs, 422 answers and rejection
rows, and may quote a field a stranger sent (100 kB, with newlines)."""


class RecordError(ValueError):
    """A record is malformed, or fails a signature or key check. The message says which."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message, MAX_ERROR_CHARS))  # whatever value it quotes


def _check_int(name: str, v: object, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise RecordError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


_ID_HEX_LEN = 2 * ID_LEN


def _check_ids(record: MeasurementRecord) -> None:
    # One hex round trip for all three ids: when each is a 32-character str and the 96
    # characters are exactly the lowercase hex of their bytes, each id passes id_bytes. Any
    # other input takes the per-field check, which rejects it with the field's name.
    a, b, c = record.landmark_key_id, record.device_id, record.device_key_id
    if type(a) is type(b) is type(c) is str and len(a) == len(b) == len(c) == _ID_HEX_LEN:
        joined = a + b + c
        try:
            if bytes.fromhex(joined).hex() == joined:
                return
        except ValueError:
            pass
    for name in ("landmark_key_id", "device_id", "device_key_id"):
        try:
            id_bytes(getattr(record, name))
        except (ValueError, TypeError):
            raise RecordError(f"{name} must be {_ID_HEX_LEN} lowercase hex digits") from None


def _check_rtts(rtts: tuple[int, ...]) -> None:
    for rtt in rtts:
        # A plain int in range passes at once; anything else gets _check_int's verdict.
        if type(rtt) is not int or not 1 <= rtt <= MAX_RTT_NS:
            _check_int("rtt_ns", rtt, 1, MAX_RTT_NS)


@dataclass(frozen=True, init=False)
class MeasurementRecord:
    """One landmark's signed measurement of one device. Validated at construction."""

    landmark_id: str
    """The landmark's name in the registry (e.g. `fra1`); up to 255 UTF-8 bytes."""
    landmark_key_id: str
    """Key id of the landmark key that signs this record."""
    device_id: str
    """Device id (crypto.identity.compute_device_id), as the device presented it."""
    device_key_id: str
    """Key id of the device key that signed the answers."""
    trust_level: TrustLevel
    """Trust level of the device identity, as the device presented it."""
    session_id: bytes
    """16 random bytes chosen by the landmark."""
    rounds_sent: int
    """Challenges the landmark sent (k)."""
    rtts_ns: tuple[int, ...]
    """RTT of every round answered in time, in round order, ns. The fastest (`min_rtt_ns`, the
    only one any bound uses) carries the device signature checked by the landmark and by every
    reader; rounds faster than it whose signature failed are left out. The slower ones are
    informational (jitter), signature-checked only under the landmark's `check_every_round`."""
    fastest_round: int
    """Round number of the fastest valid answer."""
    fastest_nonce: bytes
    """The 32-byte nonce of that round."""
    device_signature: bytes
    """The device's signature of challenge_signing_bytes for that round."""
    timestamp_source: TimestampSource
    measured_at_unix_ns: int
    """Landmark's UTC wall clock when it issued the record (not used for any RTT)."""
    landmark_signature: bytes = b""
    """Landmark's signature of `signed_bytes()`; empty only before signing."""
    version: int = RECORD_VERSION

    def __init__(
        self,
        landmark_id: str,
        landmark_key_id: str,
        device_id: str,
        device_key_id: str,
        trust_level: TrustLevel,
        session_id: bytes,
        rounds_sent: int,
        rtts_ns: tuple[int, ...],
        fastest_round: int,
        fastest_nonce: bytes,
        device_signature: bytes,
        timestamp_source: TimestampSource,
        measured_at_unix_ns: int,
        landmark_signature: bytes = b"",
        version: int = RECORD_VERSION,
    ) -> None:
        # The dataclass __init__ of a frozen class sets each field through object.__setattr__;
        # filling the instance dict directly costs about half as much (landmarks build one
        # record per session, verifiers decode them in bulk). tests/test_record.py checks that
        # these parameters are the dataclass fields, in order, with their defaults.
        state = self.__dict__
        state["landmark_id"] = landmark_id
        state["landmark_key_id"] = landmark_key_id
        state["device_id"] = device_id
        state["device_key_id"] = device_key_id
        state["trust_level"] = trust_level
        state["session_id"] = session_id
        state["rounds_sent"] = rounds_sent
        state["rtts_ns"] = rtts_ns
        state["fastest_round"] = fastest_round
        state["fastest_nonce"] = fastest_nonce
        state["device_signature"] = device_signature
        state["timestamp_source"] = timestamp_source
        state["measured_at_unix_ns"] = measured_at_unix_ns
        state["landmark_signature"] = landmark_signature
        state["version"] = version
        self.__post_init__()

    def __post_init__(self) -> None:
        # Records from the network and from JSON are built through here, and so is each record
        # a landmark issues (one per session). Each check below either passes on the plain
        # types at once or falls back to _check_int, which raises its message.
        if self.version != RECORD_VERSION:
            raise RecordError(f"unsupported record version {self.version}")
        if not self.landmark_id or len(self.landmark_id.encode()) > 255:
            raise RecordError("landmark_id must be 1 to 255 UTF-8 bytes")
        _check_ids(self)
        if not isinstance(self.trust_level, TrustLevel):
            raise RecordError("trust_level must be a TrustLevel")
        if not isinstance(self.timestamp_source, TimestampSource):
            raise RecordError("timestamp_source must be a TimestampSource")
        if len(self.session_id) != SESSION_ID_LEN:
            raise RecordError(f"session_id must be {SESSION_ID_LEN} bytes")
        rounds_sent = self.rounds_sent
        if type(rounds_sent) is not int or not 1 <= rounds_sent <= MAX_ROUNDS:
            _check_int("rounds_sent", rounds_sent, 1, MAX_ROUNDS)
        if not 1 <= len(self.rtts_ns) <= rounds_sent:
            raise RecordError("a record needs between 1 and rounds_sent valid RTTs")
        _check_rtts(self.rtts_ns)
        fastest = self.fastest_round
        if type(fastest) is not int or not 0 <= fastest < rounds_sent:
            _check_int("fastest_round", fastest, 0, rounds_sent - 1)
        if len(self.fastest_nonce) != NONCE_LEN:
            raise RecordError(f"fastest_nonce must be {NONCE_LEN} bytes")
        if len(self.device_signature) != SIGNATURE_LEN:
            raise RecordError(f"device_signature must be {SIGNATURE_LEN} bytes")
        at = self.measured_at_unix_ns
        if type(at) is not int or not 0 <= at <= _MAX_I64:
            _check_int("measured_at_unix_ns", at, 0, _MAX_I64)
        if len(self.landmark_signature) not in (0, SIGNATURE_LEN):
            raise RecordError(f"landmark_signature must be {SIGNATURE_LEN} bytes")

    @property
    def min_rtt_ns(self) -> int:
        return min(self.rtts_ns)

    @property
    def min_rtt_ms(self) -> float:
        return self.min_rtt_ns / 1e6

    @property
    def measured_at(self) -> datetime:
        # From the exact integer: the float of a present-day time in ns is off by up to 0.1 us,
        # so its microsecond could differ from `utc_text`'s (the record's measured_at_utc).
        seconds, rest_ns = divmod(self.measured_at_unix_ns, 1_000_000_000)
        return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest_ns // 1000)

    def signed_bytes(self) -> bytes:
        """Canonical bytes the landmark signs: every field except the landmark signature."""
        # Cached in the instance: a record is immutable, and the landmark encodes each one twice
        # (sign, send). Not functools.cached_property, which in 3.11 takes a lock to fill it.
        cached: bytes | None = self.__dict__.get("_canonical")
        if cached is None:
            cached = self.__dict__["_canonical"] = self._encode_canonical()
        return cached

    def _encode_canonical(self) -> bytes:
        # Every field was validated at construction, so each fits its slot (see docs/protocol.md
        # for the layout); tests/test_record.py checks these bytes against a field-by-field
        # wire.Writer encoding.
        landmark_id = self.landmark_id.encode()
        rtts = self.rtts_ns
        return b"".join(
            (
                RECORD_DOMAIN,
                _U8_U8.pack(self.version, len(landmark_id)),
                landmark_id,
                bytes.fromhex(self.landmark_key_id + self.device_id + self.device_key_id),
                _TRUST_FIELD[self.trust_level],
                self.session_id,
                _ROUNDS_FIELDS[len(rtts)].pack(
                    self.rounds_sent, len(rtts), *rtts, min(rtts), self.fastest_round
                ),
                self.fastest_nonce,
                self.device_signature,
                _SOURCE_FIELD[self.timestamp_source],
                _U64.pack(self.measured_at_unix_ns),
            )
        )

    def to_bytes(self) -> bytes:
        """Signed bytes followed by the landmark signature (the form sent to the agent)."""
        if not self.landmark_signature:
            raise RecordError("record is not signed yet")
        return self.signed_bytes() + self.landmark_signature

    @classmethod
    def from_bytes(cls, data: bytes) -> MeasurementRecord:
        """Strict inverse of to_bytes. Raises DecodeError or RecordError on any malformation."""
        r = Reader(data)
        if r.fixed(len(RECORD_DOMAIN)) != RECORD_DOMAIN:
            raise DecodeError("not a lightfence v1 record")
        version = r.u8()
        landmark_id = r.text()
        landmark_key_id = r.fixed(ID_LEN).hex()
        device_id = r.fixed(ID_LEN).hex()
        device_key_id = r.fixed(ID_LEN).hex()
        trust = r.text()
        session_id = r.fixed(SESSION_ID_LEN)
        rounds_sent = r.u8()
        rtts = tuple(r.u64() for _ in range(r.u8()))
        min_rtt = r.u64()
        fastest_round = r.u8()
        nonce = r.fixed(NONCE_LEN)
        device_sig = r.fixed(SIGNATURE_LEN)
        source = r.text()
        measured_at = r.u64()
        landmark_sig = r.fixed(SIGNATURE_LEN)
        r.end()
        try:
            rec = cls(
                landmark_id=landmark_id,
                landmark_key_id=landmark_key_id,
                device_id=device_id,
                device_key_id=device_key_id,
                trust_level=TrustLevel(trust),
                session_id=session_id,
                rounds_sent=rounds_sent,
                rtts_ns=rtts,
                fastest_round=fastest_round,
                fastest_nonce=nonce,
                device_signature=device_sig,
                timestamp_source=TimestampSource(source),
                measured_at_unix_ns=measured_at,
                landmark_signature=landmark_sig,
                version=version,
            )
        except ValueError as exc:
            raise DecodeError(f"invalid record: {exc}") from None
        if rec.min_rtt_ns != min_rtt:
            raise DecodeError("min_rtt_ns is not the minimum of rtts_ns")
        return rec

    def signed_by(self, landmark_key: SigningKey) -> MeasurementRecord:
        """This record with its landmark signature set (landmark key id must match)."""
        if landmark_key.key_id != self.landmark_key_id:
            raise RecordError("landmark_key_id does not match the signing key")
        signed = self.signed_bytes()
        # A shallow copy, not dataclasses.replace: the fields were validated when this record
        # was made and only the signature changes (landmarks sign one record per session on
        # their hot path). The cached canonical bytes travel with it: the signature is not
        # part of them.
        record = object.__new__(MeasurementRecord)
        record.__dict__.update(self.__dict__)
        object.__setattr__(record, "landmark_signature", landmark_key.sign(signed))
        return record

    def to_json_dict(self) -> dict[str, Any]:
        """JSON form for bundles and HTTP submission. Bytes are lowercase hex."""
        return {
            "version": self.version,
            "landmark_id": self.landmark_id,
            "landmark_key_id": self.landmark_key_id,
            "device_id": self.device_id,
            "device_key_id": self.device_key_id,
            # _value_, not .value: the enum property costs a microsecond a call, on the
            # verifier's hot path (every stored record's body).
            "trust_level": self.trust_level._value_,
            "session_id": self.session_id.hex(),
            "rounds_sent": self.rounds_sent,
            "rtts_ns": list(self.rtts_ns),
            "min_rtt_ns": self.min_rtt_ns,
            "fastest_round": self.fastest_round,
            "fastest_nonce": self.fastest_nonce.hex(),
            "device_signature": self.device_signature.hex(),
            "timestamp_source": self.timestamp_source._value_,
            "measured_at_unix_ns": self.measured_at_unix_ns,
            "measured_at_utc": utc_text(self.measured_at_unix_ns),
            "landmark_signature": self.landmark_signature.hex(),
        }

    def to_json_text(self) -> str:
        """`to_json_dict` as compact JSON text, built without the dict (same keys, same order,
        same values): a stream worker stores one per record, at a third of the cost."""
        kept: str | None = self.__dict__.get("_json_text")  # from_json_message's
        if kept is not None:
            return kept
        rtts = self.rtts_ns
        return (
            f'{{"version":{self.version},"landmark_id":{_json_string(self.landmark_id)},'
            f'"landmark_key_id":"{self.landmark_key_id}","device_id":"{self.device_id}",'
            f'"device_key_id":"{self.device_key_id}","trust_level":"{self.trust_level._value_}",'
            f'"session_id":"{self.session_id.hex()}","rounds_sent":{self.rounds_sent},'
            f'"rtts_ns":[{",".join(map(str, rtts))}],"min_rtt_ns":{min(rtts)},'
            f'"fastest_round":{self.fastest_round},"fastest_nonce":"{self.fastest_nonce.hex()}",'
            f'"device_signature":"{self.device_signature.hex()}",'
            f'"timestamp_source":"{self.timestamp_source._value_}",'
            f'"measured_at_unix_ns":{self.measured_at_unix_ns},'
            f'"measured_at_utc":"{utc_text(self.measured_at_unix_ns)}",'
            f'"landmark_signature":"{self.landmark_signature.hex()}"}}'
        )

    @classmethod
    def from_json_message(cls, data: bytes) -> MeasurementRecord:
        """A record from its JSON text as bytes (a stream message), decoded as strictly as
        from_json_dict. When the decoded object is in to_json_dict's form (what every landmark
        sends), orjson writes `to_json_text` for it at a fraction of the cost of building it:
        a stream worker stores one per record."""
        # orjson: a quarter of the json module's time per record, strict UTF-8, no NaN, and
        # nesting past 1,024 levels (`[[[[...`) is a decode error, not a RecursionError that
        # would end a stream worker on every replay of that message. Imported here: it is the
        # stream worker's extra, and this module is the agent's too.
        import orjson

        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"message is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RecordError("message is not a record object")
        rec = cls.from_json_dict(doc)
        if _renders_as_built(doc, rec):
            rec.__dict__["_json_text"] = orjson.dumps(doc).decode()
        return rec

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> MeasurementRecord:
        """Strict inverse of to_json_dict: unknown or missing keys and wrong types are errors.

        `measured_at_utc` is informational (the signed time is `measured_at_unix_ns`) and may be
        omitted; `min_rtt_ns`, when present, must equal min(rtts_ns).
        """
        if not isinstance(d, Mapping):
            raise RecordError("a record must be a JSON object")
        keys = d.keys()
        if not keys <= _JSON_KEYS:  # set comparisons on the view: no set built per record
            raise RecordError(f"unknown record fields: {sorted(set(keys) - _JSON_KEYS)}")
        if not keys >= _JSON_REQUIRED:
            raise RecordError(f"missing record fields: {sorted(_JSON_REQUIRED - set(keys))}")
        rtts = d["rtts_ns"]
        if not isinstance(rtts, list) or len(rtts) > MAX_ROUNDS:
            raise RecordError(f"rtts_ns must be a list of at most {MAX_ROUNDS} integers")
        rec = _from_plain_json(cls, d, rtts)
        if rec is None:
            rec = _from_json_checked(cls, d, rtts)
        if "min_rtt_ns" in d and d["min_rtt_ns"] != rec.min_rtt_ns:
            raise RecordError("min_rtt_ns is not the minimum of rtts_ns")
        if not rec.landmark_signature:
            # Its JSON form exists only once signed; an empty one would pass here and fail
            # later in to_bytes(), a crash in POST /records and the stream worker (which then
            # replays it forever) instead of a bad record.
            raise RecordError("landmark_signature is empty: a record is signed by its landmark")
        return rec


def utc_text(unix_ns: int) -> str:
    """`measured_at_utc`: the time in ISO 8601 UTC to the microsecond, truncated from the exact
    integer (informational; the signed time is `measured_at_unix_ns`)."""
    seconds, rest_ns = divmod(unix_ns, 1_000_000_000)
    return f"{_utc_second(seconds)}.{rest_ns // 1000:06d}+00:00"


@lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    # A stream worker writes one per record, and records come a second at a time: the cache
    # takes 2.5 us (datetime) to 0.4 us a record.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _from_plain_json(
    cls: type[MeasurementRecord], d: Mapping[str, Any], rtts: list[Any]
) -> MeasurementRecord | None:
    """The record when every field has its plain JSON type and canonical spelling (what every
    landmark sends), else None: _from_json_checked then finds the first fault and names it.
    Stream workers decode every record they check: this path costs half as much."""
    landmark_id, landmark_key_id = d["landmark_id"], d["landmark_key_id"]
    device_id, device_key_id = d["device_id"], d["device_key_id"]
    session_hex, nonce_hex = d["session_id"], d["fastest_nonce"]
    device_sig_hex, landmark_sig_hex = d["device_signature"], d["landmark_signature"]
    trust_text, source_text, version = d["trust_level"], d["timestamp_source"], d["version"]
    if not (
        type(landmark_id)
        is type(landmark_key_id)
        is type(device_id)
        is type(device_key_id)
        is type(session_hex)
        is type(nonce_hex)
        is type(device_sig_hex)
        is type(landmark_sig_hex)
        is type(trust_text)
        is type(source_text)
        is str
        and type(version) is int
        and version == RECORD_VERSION
    ):
        return None
    trust, source = _TRUST_BY_VALUE.get(trust_text), _SOURCE_BY_VALUE.get(source_text)
    if trust is None or source is None:
        return None
    try:
        session_id, nonce = bytes.fromhex(session_hex), bytes.fromhex(nonce_hex)
        device_sig, landmark_sig = bytes.fromhex(device_sig_hex), bytes.fromhex(landmark_sig_hex)
    except ValueError:
        return None
    if (
        session_id.hex() != session_hex
        or nonce.hex() != nonce_hex
        or device_sig.hex() != device_sig_hex
        or landmark_sig.hex() != landmark_sig_hex
    ):
        return None  # uppercase or spaced hex: refused, with its field's name, by the other path
    try:
        return cls(
            landmark_id,
            landmark_key_id,
            device_id,
            device_key_id,
            trust,
            session_id,
            d["rounds_sent"],
            tuple(rtts),
            d["fastest_round"],
            nonce,
            device_sig,
            source,
            d["measured_at_unix_ns"],
            landmark_sig,
            version,
        )
    except ValueError:
        # The constructor's checks (ids, ranges, lengths, RTTs) failed: the checked path
        # reports the first fault in field order.
        return None


def _from_json_checked(
    cls: type[MeasurementRecord], d: Mapping[str, Any], rtts: list[Any]
) -> MeasurementRecord:
    """from_json_dict field by field, each fault a RecordError naming its field."""
    try:
        rec = cls(
            version=_check_int("version", d["version"], 0, 255),
            landmark_id=str_field(d, "landmark_id"),
            landmark_key_id=str_field(d, "landmark_key_id"),
            device_id=str_field(d, "device_id"),
            device_key_id=str_field(d, "device_key_id"),
            trust_level=TrustLevel(str_field(d, "trust_level")),
            session_id=hex_field(d, "session_id"),
            rounds_sent=d["rounds_sent"],
            rtts_ns=tuple(_check_int("rtt_ns", v, 1, MAX_RTT_NS) for v in rtts),
            fastest_round=d["fastest_round"],
            fastest_nonce=hex_field(d, "fastest_nonce"),
            device_signature=hex_field(d, "device_signature"),
            timestamp_source=TimestampSource(str_field(d, "timestamp_source")),
            measured_at_unix_ns=d["measured_at_unix_ns"],
            landmark_signature=hex_field(d, "landmark_signature"),
        )
    except RecordError:
        raise
    except ValueError as exc:
        raise RecordError(f"invalid record: {exc}") from None
    return rec


_MAX_I64 = 2**63 - 1
_U8_U8 = struct.Struct(">BB")
_U64 = struct.Struct(">Q")
_ROUNDS_FIELDS = tuple(struct.Struct(f">BB{n}QQB") for n in range(MAX_ROUNDS + 1))
"""Per RTT count: rounds_sent, RTT count, the RTTs, min RTT, fastest round (one pack call)."""
_TRUST_FIELD = {t: Writer().text(t.value).getvalue() for t in TrustLevel}
_SOURCE_FIELD = {s: Writer().text(s.value).getvalue() for s in TimestampSource}

_JSON_REQUIRED = {
    "version", "landmark_id", "landmark_key_id", "device_id", "device_key_id", "trust_level",
    "session_id", "rounds_sent", "rtts_ns", "fastest_round", "fastest_nonce", "device_signature",
    "timestamp_source", "measured_at_unix_ns", "landmark_signature",
}  # fmt: skip
_JSON_KEYS = _JSON_REQUIRED | {"min_rtt_ns", "measured_at_utc"}
_JSON_ORDER = (
    "version", "landmark_id", "landmark_key_id", "device_id", "device_key_id", "trust_level",
    "session_id", "rounds_sent", "rtts_ns", "min_rtt_ns", "fastest_round", "fastest_nonce",
    "device_signature", "timestamp_source", "measured_at_unix_ns", "measured_at_utc",
    "landmark_signature",
)  # fmt: skip
"""to_json_dict's keys, in its order."""


def _renders_as_built(doc: dict[str, Any], rec: MeasurementRecord) -> bool:
    """Whether orjson's compact text of `doc`, which decoded to `rec`, is `rec.to_json_text()`
    built afresh. Decoding already made every id and bytes field lowercase hex, every number a
    plain int and the enums their values, so what is left to hold is: the keys in to_json_dict's
    order, `min_rtt_ns` a plain int (True == 1 would pass its decode check), `measured_at_utc`
    the text to_json_text writes, and a landmark id that both encoders write alike (printable
    ASCII without a quote or backslash: the json module escapes the rest as \\u, orjson not)."""
    lid = rec.landmark_id
    return (
        tuple(doc) == _JSON_ORDER
        and type(doc["min_rtt_ns"]) is int
        and doc["measured_at_utc"] == utc_text(rec.measured_at_unix_ns)
        and lid.isascii()
        and lid.isprintable()
        and '"' not in lid
        and "\\" not in lid
    )


_TRUST_BY_VALUE = {t._value_: t for t in TrustLevel}
_SOURCE_BY_VALUE = {s._value_: s for s in TimestampSource}


def str_field(d: Mapping[str, Any], name: str) -> str:
    """A JSON field that must be a string (RecordError, a ValueError, otherwise)."""
    v = d[name]
    if not isinstance(v, str):
        raise RecordError(f"{name} must be a string")
    return v


def hex_field(d: Mapping[str, Any], name: str) -> bytes:
    """A JSON field that must be lowercase hex: the one canonical spelling of its bytes."""
    v = str_field(d, name)
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        raise RecordError(f"{name} must be hex") from None
    if raw.hex() != v:
        raise RecordError(f"{name} must be lowercase hex without spaces")
    return raw


@dataclass(frozen=True)
class SignatureCheck:
    """One Ed25519 check a record needs, as data, so callers can run many at once."""

    public_key: bytes
    signature: bytes
    message: bytes
    failure: str
    """The RecordError message when the check fails."""

    def holds(self) -> bool:
        return verify_signature(self.public_key, self.signature, self.message)


def signature_checks(
    record: MeasurementRecord, landmark_public_key: bytes, device_public_key: bytes
) -> tuple[SignatureCheck, SignatureCheck]:
    """The two signature checks of `verify`, after its key checks (RecordError if those fail).

    `verify` is these run in order; the verifier service runs a whole batch's on all cores.
    """
    if key_id(landmark_public_key) != record.landmark_key_id:
        raise RecordError(
            f"record names landmark key {record.landmark_key_id}, "
            f"not the given key {key_id(landmark_public_key)}"
        )
    if key_id(device_public_key) != record.device_key_id:
        raise RecordError(
            f"record names device key {record.device_key_id}, "
            f"not the given key {key_id(device_public_key)}"
        )
    return signature_pair(record, landmark_public_key, device_public_key)


def signature_pair(
    record: MeasurementRecord, landmark_public_key: bytes, device_public_key: bytes
) -> tuple[SignatureCheck, SignatureCheck]:
    """The two signature checks alone, for keys already known to be the ones the record names
    (a registry that matched the record's key ids against the ids it derived from these keys at
    registration): signature_checks less its two key-id hashes."""
    message = challenge_signing_bytes(
        record.fastest_nonce,
        record.landmark_id,
        record.device_id,
        record.session_id,
        record.fastest_round,
    )
    return (
        SignatureCheck(
            landmark_public_key,
            record.landmark_signature,
            record.signed_bytes(),
            f"landmark signature of {record.landmark_id} does not verify",
        ),
        SignatureCheck(
            device_public_key,
            record.device_signature,
            message,
            "device signature of the fastest round does not verify",
        ),
    )


def verify(record: MeasurementRecord, landmark_public_key: bytes, device_public_key: bytes) -> None:
    """Check a record with public keys alone; raise RecordError saying what failed.

    Checks that both keys are the ones the record names, that the landmark signed exactly these
    fields, and that the device key signed the fastest round's challenge. Passing means: this
    landmark vouches that the device key answered a fresh challenge in `min_rtt_ns`. Whether the
    device id belongs to the key (and its hardware) is the identity's check, not the record's.
    """
    for check in signature_checks(record, landmark_public_key, device_public_key):
        if not check.holds():
            raise RecordError(check.failure)
