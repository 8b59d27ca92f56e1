"""`lightfence verify` judges a bundle as the verifier service does, reads it with bounded memory,
and turns hostile files into one error line and exit code 2 (issue 17, findings 4 and 7)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lightfence.cli.app import app
from lightfence.evidence import json_stream
from lightfence.evidence.bundle import (
    BundleError,
    EvidenceBundle,
    check_bundle,
    check_bundle_file,
    load_bundle,
    save_bundle,
)
from lightfence.evidence.json_stream import JsonObjectStream, JsonStreamError
from lightfence.identity.device import software_identity
from lightfence.model.registry import LandmarkEntry, registry_json
from record_factory import make_signed_record, seeded_key

DEV = seeded_key("device")
PLACES = {  # id: (lat, lon)
    "fra1": (50.1109, 8.6821),
    "par1": (48.8566, 2.3522),
    "ams1": (52.3676, 4.9041),
    "waw1": (52.2297, 21.0122),
}
ENTRIES = {
    lid: LandmarkEntry(lid, seeded_key(lid).public_bytes, lat, lon, 0.5, "127.0.0.1:7800")
    for lid, (lat, lon) in PLACES.items()
}
H_NS = 3600 * 10**9
NEAR_FRANKFURT = "within:50.1109,8.6821,500"


def record(lid: str, rtt_ms: float, age_ns: int, n: int = 0) -> dict[str, Any]:
    rec = make_signed_record(
        seeded_key(lid),
        DEV,
        landmark_id=lid,
        rtts_ns=(int(rtt_ms * 1e6),),
        session_id=bytes([n]) * 16,
        measured_at_unix_ns=time.time_ns() - age_ns,
    )
    return rec.to_json_dict()


def bundle_doc(*records: dict[str, Any]) -> dict[str, Any]:
    b = EvidenceBundle(software_identity(DEV), (), tuple(ENTRIES.values()), time.time_ns())
    doc = b.to_json_dict()
    doc["records"] = list(records)
    return doc


def verify(tmp_path: Path, doc: Any, *args: str) -> tuple[int, str]:
    path = tmp_path / "bundle.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(registry_json(ENTRIES.values())))
    result = CliRunner().invoke(app, ["verify", str(path), "--landmark-keys", str(registry), *args])
    return result.exit_code, result.output


def as_json(out: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(out[out.index("{") :])
    return doc


# --- finding 4: the verdict is the verifier's -------------------------------------------------


def test_fresh_tight_records_verify(tmp_path: Path) -> None:
    code, out = verify(tmp_path, bundle_doc(record("fra1", 0.5, 0)), "--policy", NEAR_FRANKFURT)
    assert code == 0, out
    assert "VERIFIED" in out


def test_records_thirty_days_old_are_stale(tmp_path: Path) -> None:
    doc = bundle_doc(record("fra1", 0.5, 30 * 24 * H_NS, 1), record("par1", 6.0, 30 * 24 * H_NS, 2))
    code, out = verify(tmp_path, doc, "--policy", NEAR_FRANKFURT, "--json")
    result = as_json(out)
    assert code == 1
    assert not result["accepted"] and result["verdict"] is None
    assert all("stale" in r["reason"] for r in result["rejected"])


def test_old_tight_records_do_not_count_beside_fresh_loose_ones(tmp_path: Path) -> None:
    # Tight records 20 h old (within --max-age-hours 24, so valid) and fresh loose ones: the
    # verifier decides on the fresh ones only (its 15-minute window), so UNVERIFIED.
    doc = bundle_doc(
        record("fra1", 0.5, 20 * H_NS, 1),
        record("par1", 4.0, 20 * H_NS, 2),
        record("fra1", 20.0, 0, 3),
        record("par1", 20.0, 0, 4),
    )
    code, out = verify(tmp_path, doc, "--policy", NEAR_FRANKFURT, "--max-age-hours", "24", "--json")
    result = as_json(out)
    assert code == 1 and len(result["accepted"]) == 4 and not result["rejected"]
    assert result["verdict"]["verdict"] != "VERIFIED"
    assert {a["index"] for a in result["accepted"] if a["counted"]} == {2, 3}
    # With a window that takes them in, each grows by 20 h at 1,000 km/h: still not VERIFIED.
    code, out = verify(tmp_path, doc, "--policy", NEAR_FRANKFURT, "--window-s", "86400", "--json")
    assert code == 1 and as_json(out)["verdict"]["verdict"] != "VERIFIED"
    # Only a caller who says devices do not move gets the old tight caps back.
    code, out = verify(
        tmp_path, doc, "--policy", NEAR_FRANKFURT, "--window-s", "86400",
        "--max-device-speed-kmh", "0",
    )  # fmt: skip
    assert code == 0, out


def test_an_unsigned_policy_in_the_bundle_is_shown_never_used(tmp_path: Path) -> None:
    # Four landmarks: 'auto' tolerates one liar, and without Frankfurt's cap the rest reach
    # past DE: UNVERIFIED. A bundle that says liars 0 must not change that.
    rtts = {"fra1": 0.5, "par1": 6.0, "ams1": 5.0, "waw1": 9.0}
    doc = bundle_doc(*(record(lid, ms, 0, i) for i, (lid, ms) in enumerate(rtts.items())))
    code, out = verify(tmp_path, doc, "--policy", "in:DE", "--json")
    assert code == 1 and as_json(out)["verdict"]["verdict"] == "UNVERIFIED"
    doc["policy"] = {"liars": 0}
    doc["verdict"] = {"verdict": "VERIFIED"}
    code, out = verify(tmp_path, doc, "--policy", "in:DE", "--json")
    result = as_json(out)
    assert code == 1 and result["verdict"]["verdict"] == "UNVERIFIED" and result["liars"] == "auto"
    assert any("unsigned" in n and "liars" in n for n in result["notes"])
    code, out = verify(tmp_path, doc, "--policy", "in:DE")
    assert code == 1 and "unsigned" in out
    # The auditor's own option is what changes the setting.
    code, out = verify(tmp_path, doc, "--policy", "in:DE", "--liars", "0")
    assert code == 0, out


def test_records_dated_past_the_verifier_clock_skew_are_refused(tmp_path: Path) -> None:
    code, out = verify(tmp_path, bundle_doc(record("fra1", 0.5, -300 * 10**9)), "--json")
    assert code == 1 and "future" in as_json(out)["rejected"][0]["reason"]


# --- reading: size cap, hostile JSON, streaming -------------------------------------------------


def test_the_size_cap_refuses_a_big_file(tmp_path: Path) -> None:
    code, out = verify(tmp_path, bundle_doc(record("fra1", 0.5, 0)), "--max-bytes", "1000")
    assert code == 2 and "cap" in out and "Traceback" not in out


HOSTILE = {
    "deep top level": "[" * 100_000 + "]" * 100_000,
    "deep member": '{"format": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "deep record": '{"records": [' + "[" * 100_000 + "]" * 100_000 + "]}",
    "moderately deep record": '{"records": [' + '{"a":' * 500 + "1" + "}" * 500 + "]}",
    "huge integer": '{"format": "lightfence-evidence", "version": ' + "9" * 5000 + "}",
    "huge integer in a record": '{"records": [{"measured_at_unix_ns": ' + "1" * 5000 + "}]}",
    "NaN": '{"records": [NaN]}',
    "duplicate key": '{"records": [], "records": []}',
    "trailing data": '{"records": []} {}',
    "truncated": '{"records": [{"a": 1',
    "not an object": "[]",
    "empty": "",
    "invalid UTF-8": b'{"records": ["\xff"]}'.decode("latin-1"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_json_is_one_error_line_and_exit_code_2(tmp_path: Path, name: str) -> None:
    path = tmp_path / "bundle.json"
    text = HOSTILE[name]
    path.write_bytes(text.encode("latin-1") if name == "invalid UTF-8" else text.encode())
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(registry_json(ENTRIES.values())))
    result = CliRunner().invoke(app, ["verify", str(path), "--landmark-keys", str(registry)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert isinstance(result.exception, SystemExit)  # typer.Exit(2), nothing raised


def test_streaming_check_equals_the_in_memory_check(tmp_path: Path) -> None:
    doc = bundle_doc(
        record("fra1", 0.5, 0, 1),
        record("fra1", 0.5, 0, 1),  # replayed
        record("par1", 6.0, 40 * H_NS, 2),  # stale
        record("ams1", 5.0, 0, 3),
    )
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    now = time.time_ns()
    streamed = check_bundle_file(path, ENTRIES, now_unix_ns=now)
    in_memory = check_bundle(load_bundle(path), ENTRIES, now_unix_ns=now)
    assert streamed == in_memory
    assert [r.index for r in streamed.rejected] == [1, 2]
    # Records before the device (any key order is a bundle): a second pass checks them.
    reordered = {"records": doc["records"]} | {k: v for k, v in doc.items() if k != "records"}
    path.write_text(json.dumps(reordered))
    assert check_bundle_file(path, ENTRIES, now_unix_ns=now) == streamed
    # Our own writer's output reads back the same way.
    b = load_bundle(path)
    save_bundle(b, tmp_path / "saved.json")
    assert check_bundle_file(tmp_path / "saved.json", ENTRIES, now_unix_ns=now) == streamed


def test_a_bundle_without_records_or_device_is_refused(tmp_path: Path) -> None:
    doc = bundle_doc()
    path = tmp_path / "b.json"
    for drop in ("records", "device", "format"):
        path.write_text(json.dumps({k: v for k, v in doc.items() if k != drop}))
        with pytest.raises(BundleError):
            check_bundle_file(path, ENTRIES, now_unix_ns=0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=60)
@given(
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    st.lists(json_values, max_size=6),
    st.integers(1, 40),
    st.sampled_from([None, 2]),
)
def test_the_stream_reads_what_json_reads_across_chunk_edges(
    members: dict[str, Any], items: list[Any], chunk: int, indent: int | None
) -> None:
    import io

    doc = {**members, "items": items}
    text = json.dumps(doc, indent=indent)
    old = json_stream.CHUNK_BYTES
    json_stream.CHUNK_BYTES = chunk  # tiny chunks: every token is cut somewhere
    try:
        got: dict[str, Any] = {}
        streamed: list[Any] = []
        stream = JsonObjectStream(io.BytesIO(text.encode()), 10**7, 10**6)
        for key, value, item in stream.members(frozenset({"items"})):
            if item:
                streamed.append(value)
            else:
                got[key] = value
    finally:
        json_stream.CHUNK_BYTES = old
    assert got == members and streamed == items


def test_a_number_cut_by_a_chunk_edge_is_read_whole() -> None:
    import io

    old = json_stream.CHUNK_BYTES
    json_stream.CHUNK_BYTES = 3
    try:
        stream = JsonObjectStream(io.BytesIO(b'{"a": 123456789}'), 100, 100)
        assert list(stream.members(frozenset())) == [("a", 123456789, False)]
        with pytest.raises(JsonStreamError, match="larger than"):
            list(
                JsonObjectStream(io.BytesIO(b'{"a": "' + b"x" * 50 + b'"}'), 100, 10).members(
                    frozenset()
                )
            )
    finally:
        json_stream.CHUNK_BYTES = old


def test_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(app, ["verify", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit codes: 0" in text and "1 any record rejected" in text and "2 unreadable" in text


def test_a_bound_past_half_the_earth_is_said_in_words(tmp_path: Path) -> None:
    """Issue 20: a 344 ms RTT bounds the device to 51,579 km, more than any distance on Earth:
    the table says so instead of printing the number as if it placed the device."""
    doc = bundle_doc(record("fra1", 0.5, 0, 1), record("waw1", 344.0, 0, 2))
    _, out = verify(tmp_path, doc, "--policy", NEAR_FRANKFURT)
    assert "51,579" not in out and "anywhere on Earth" in " ".join(out.split()), out


def test_distance_words() -> None:
    from lightfence.core.estimate import distance_words

    assert distance_words(75.04) == "75.0 km"
    assert distance_words(12_000.0) == "12,000 km: most of the globe"
    assert distance_words(51_579.0).startswith("anywhere on Earth")
    assert distance_words(float("inf")).startswith("anywhere on Earth")
