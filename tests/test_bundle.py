from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightfence.core.verdict import VerdictKind
from lightfence.evidence.bundle import (
    BundleError,
    EvidenceBundle,
    check_bundle,
    load_bundle,
    save_bundle,
)
from lightfence.evidence.verdict import bundle_verdict
from lightfence.identity.device import software_identity
from lightfence.model.registry import LandmarkEntry
from record_factory import make_signed_record, seeded_key

LM = seeded_key("landmark")
DEV = seeded_key("device")
NOW = 1_764_000_000_000_000_000
ENTRY = LandmarkEntry("fra1", LM.public_bytes, 50.1109, 8.6821, 1.0, "127.0.0.1:7800")
TRUSTED = {"fra1": ENTRY}


def bundle(*records_kw: dict[str, object]) -> EvidenceBundle:
    recs = tuple(make_signed_record(LM, DEV, **kw) for kw in records_kw)  # type: ignore[arg-type]
    return EvidenceBundle(software_identity(DEV), recs, (ENTRY,), NOW)


def test_save_load_round_trip(tmp_path: Path) -> None:
    b = bundle({}, {"session_id": b"T" * 16})
    save_bundle(b, tmp_path / "b.json")
    assert load_bundle(tmp_path / "b.json") == b


def test_valid_bundle_checks_and_decides() -> None:
    check = check_bundle(bundle({}), TRUSTED, now_unix_ns=NOW)
    assert check.all_valid and len(check.accepted) == 1
    assert any("software key file" in n for n in check.notes)
    verdict = bundle_verdict(check, "within:50.1109,8.6821,400")
    assert verdict.kind is VerdictKind.VERIFIED


@pytest.mark.parametrize(
    ("kw", "trusted", "reason"),
    [
        ({}, {}, "unknown landmark"),
        ({"landmark_id": "ams1"}, TRUSTED, "unknown landmark"),
        ({"measured_at_unix_ns": NOW + 10**12}, TRUSTED, "future"),
        ({"measured_at_unix_ns": NOW - 7200 * 10**9}, TRUSTED, "stale"),
    ],
)
def test_bad_records_are_rejected_with_reasons(
    kw: dict[str, object], trusted: dict[str, LandmarkEntry], reason: str
) -> None:
    check = check_bundle(bundle(kw), trusted, now_unix_ns=NOW, max_age_s=3600)
    assert not check.accepted and reason in check.rejected[0].reason


def test_replayed_record_is_rejected_once_seen() -> None:
    check = check_bundle(bundle({}, {}), TRUSTED, now_unix_ns=NOW)
    assert len(check.accepted) == 1 and "duplicate" in check.rejected[0].reason


def test_record_for_another_device_is_rejected() -> None:
    other = seeded_key("other-device")
    b = bundle({})
    foreign = make_signed_record(LM, other)
    check = check_bundle(
        EvidenceBundle(b.device, (foreign,), b.landmarks), TRUSTED, now_unix_ns=NOW
    )
    assert "for device" in check.rejected[0].reason


def test_malformed_bundles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    bad: list[object] = [{}, {"format": "lightfence-evidence", "version": 9}, []]
    for data in bad:
        path.write_text(json.dumps(data))
        with pytest.raises(BundleError):
            load_bundle(path)
    good = bundle({}).to_json_dict()
    good["device"]["device_id"] = "00" * 16
    path.write_text(json.dumps(good))
    with pytest.raises(BundleError, match="does not match"):
        load_bundle(path)
