"""A stored record that fails batch re-verification stops counting at once: the verdict that
rested on it does not stand (fleet.reverify). The attacker here has write access to the
verifier's database, the threat the audit chain's state digests are for: records are not
among those digests, so a forged or edited record row is found by re-verification, and must
then leave every verdict."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text, update

from lightfence.core.kinds import VerdictKind
from lightfence.fleet.reverify import reverify
from lightfence.verifier import audit_verify, queries
from lightfence.verifier.ingest import record_hash
from lightfence.verifier.models import AlertRow, DeviceRow, RecordRow
from record_factory import seeded_key
from verifier_support import ADMIN, Fleet, db_url, make_fleet, run_sql

__all__ = ["db_url"]

GENUINE_MS = {"par1": 6.0, "ams1": 5.0}
"""Honest RTTs from Frankfurt that alone cannot place the device inside Germany."""


def _latest_kind(fleet: Fleet) -> tuple[str, list[int]]:
    with fleet.service.read() as s:
        row = queries.latest_verdict(s, fleet.device_id)
    assert row is not None
    return row.kind, [int(i["record_id"]) for i in row.inputs]


def _forge_row(fleet: Fleet, url: str) -> int:
    """A record from `fra1` at 0.5 ms signed with a key that is not fra1's, written straight
    into the records table (as if accepted), its device marked for a verdict."""
    real_key = fleet.landmark_keys["fra1"]
    fleet.landmark_keys["fra1"] = seeded_key("not-fra1")
    try:
        fake = fleet.record("fra1", 0.5)
    finally:
        fleet.landmark_keys["fra1"] = real_key
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            RecordRow.__table__.insert().values(  # type: ignore[attr-defined]
                record_hash=record_hash(fake),
                device_id=fake.device_id,
                landmark_id=fake.landmark_id,
                session_id=fake.session_id.hex(),
                min_rtt_ns=fake.min_rtt_ns,
                measured_ns=fake.measured_at_unix_ns,
                received_ns=fake.measured_at_unix_ns,
                submitted_by="attacker",
                body=fake.to_json_dict(),
            )
        )
        conn.execute(
            update(DeviceRow)
            .where(DeviceRow.id == fake.device_id)
            .values(needs_verdict=True, dirty_seq=DeviceRow.dirty_seq + 1,
                    last_record_ns=fake.measured_at_unix_ns)
        )  # fmt: skip
        rid = conn.execute(
            select(RecordRow.id).where(RecordRow.record_hash == record_hash(fake))
        ).scalar_one()
    engine.dispose()
    return int(rid)


def test_a_forged_record_row_leaves_the_verdict_it_made(db_url: str) -> None:
    fleet = make_fleet(db_url)
    try:
        recs = [fleet.record(lid, ms) for lid, ms in GENUINE_MS.items()]
        assert all(o.status == "stored" for o in fleet.service.ingest(recs, ADMIN))
        fleet.service.recompute_all()
        honest_kind, _ = _latest_kind(fleet)
        assert honest_kind != VerdictKind.VERIFIED  # the premise: the honest records fall short
        forged = _forge_row(fleet, db_url)
        fleet.service.recompute_all()
        kind, inputs = _latest_kind(fleet)
        # What the attack buys before re-verification runs: the verifier trusts its records.
        assert kind == VerdictKind.VERIFIED and forged in inputs
        report = reverify(fleet.service, engine="local")
        assert [(f[0], f[1]) for f in report.failed] == [(forged, fleet.device_id)]
        assert "signature re-check failed" in report.failed[0][2]
        kind, inputs = _latest_kind(fleet)
        assert kind == honest_kind and forged not in inputs
        with fleet.service.read() as s:
            row = s.get(RecordRow, forged)
            assert row is not None and row.invalid_ns is not None  # kept, as evidence
            assert "signature" in (row.invalid_reason or "")
            listed = {r["id"]: r for r in queries.device_records(s, fleet.device_id, 10)}
            assert listed[forged]["excluded_at"]
            assert "signature" in listed[forged]["excluded_reason"]
            assert all(r["excluded_at"] is None for i, r in listed.items() if i != forged)
            kinds = s.execute(select(AlertRow.kind).where(AlertRow.device_id == fleet.device_id))
            assert "tampered_evidence" in kinds.scalars().all()
            # The forged row names no store entry: `audit verify` says so, apart from the pass.
            problems = audit_verify.verify_chain(s).problems
            assert problems == [f"records row {forged} has no audit entry: inserted outside the "
                                "verifier"], problems  # fmt: skip
        # A later record of the device, or a new pass, never brings it back.
        fleet.service.ingest([fleet.record("par1", 6.5)], ADMIN)
        fleet.service.recompute_all()
        assert forged not in _latest_kind(fleet)[1]
        assert reverify(fleet.service, engine="local").failed == []  # marked: not re-alerted
        # An attacker who clears the mark is found again by the next pass.
        engine = create_engine(db_url)
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE records SET invalid_ns = NULL WHERE id = {forged}"))
        engine.dispose()
        assert [f[0] for f in reverify(fleet.service, engine="local").failed] == [forged]
        assert forged not in _latest_kind(fleet)[1]
    finally:
        fleet.service.close()


def test_a_rekeyed_landmarks_older_records_stop_counting_and_are_not_accused(
    db_url: str,
) -> None:
    """Re-keying a landmark (often: replacing a compromised key) ends what its older records
    count for, as a move does; re-verification, which can check only against the key now
    registered, leaves them alone instead of marking honest records invalid."""
    from lightfence.verifier.clock import now_ns
    from lightfence.verifier.registry import LandmarkSpec, put_landmark
    from verifier_support import LANDMARKS

    fleet = make_fleet(db_url, max_clock_skew_s=0.5)
    try:
        recs = [fleet.record(lid, ms) for lid, ms in (("fra1", 0.5), *GENUINE_MS.items())]
        assert all(o.status == "stored" for o in fleet.service.ingest(recs, ADMIN))
        fleet.service.recompute_all()
        kind, inputs = _latest_kind(fleet)
        assert kind == VerdictKind.VERIFIED and len(inputs) == 3
        new_key = seeded_key("fra1-new")
        lat, lon = LANDMARKS["fra1"]
        with fleet.service.write() as s:
            put_landmark(s, LandmarkSpec("fra1", lat, lon, new_key.public_bytes.hex(), "lf-net"),
                         ADMIN, now_ns(), rekey=True)  # fmt: skip
        fleet.landmark_keys["fra1"] = new_key
        fleet.service.recompute_all()
        kind, inputs = _latest_kind(fleet)
        assert kind != VerdictKind.VERIFIED and len(inputs) == 2  # fra1's old record is out
        report = reverify(fleet.service, engine="local")
        assert report.failed == []
        # A fresh record under the new key counts (measured past the clock skew allowed after
        # the re-key).
        time.sleep(0.6)
        assert fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)[0].status == "stored"
        fleet.service.recompute_all()
        assert _latest_kind(fleet)[0] == VerdictKind.VERIFIED
    finally:
        fleet.service.close()


def test_reverify_from_the_cli_lists_what_it_excludes(db_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lightfence.cli.app import app

    fleet = make_fleet(db_url)
    try:
        fleet.service.ingest([fleet.record(lid, ms) for lid, ms in GENUINE_MS.items()], ADMIN)
        forged = _forge_row(fleet, db_url)
    finally:
        fleet.service.close()
    run = CliRunner().invoke
    result = run(app, ["reverify", "--db", db_url])
    assert result.exit_code == 1, result.output
    assert "1 device(s): 3 record(s) and 0 GPU round(s) checked" in result.output
    assert f"EXCLUDED record {forged} of device {fleet.device_id}: signature" in result.output
    result = run(app, ["reverify", "--db", db_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["failed"] == []  # marked: not found again
    # Bad input is one line and exit 2, never a traceback.
    missing = tmp_path / "nope.toml"
    result = run(app, ["reverify", "--config", str(missing)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert str(missing) in result.output


def test_a_malformed_row_fails_alone_and_the_pass_goes_on(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL refuses text in an integer column; SQLite stores it")
    fleet = make_fleet(db_url)
    try:
        recs = [fleet.record(lid, ms) for lid, ms in GENUINE_MS.items()]
        outcomes = fleet.service.ingest(recs, ADMIN)
        bad = outcomes[0].record_id
        run_sql(
            db_url,
            f"UPDATE records SET measured_ns = 'x' WHERE id = {bad}",
            # A landmark that moved once: its records' times are compared with the move's.
            "UPDATE landmarks SET position_since_ns = 1",
        )
        report = reverify(fleet.service, engine="local")
        assert [f[0] for f in report.failed] == [bad]  # and the other record was checked
        assert report.records == 2
        assert bad not in _latest_kind(fleet)[1]
    finally:
        fleet.service.close()


def test_a_refuting_record_moved_onto_a_retired_device_is_found(db_url: str) -> None:
    """Rows of retired devices are checked too: moving a record onto one (the foreign key
    holds) took it out of its device's verdicts and out of every pass."""
    fleet = make_fleet(db_url)
    try:
        (out,) = fleet.service.ingest([fleet.record("par1", 6.0)], ADMIN)
        other = seeded_key("retired-device")
        from lightfence.verifier.registry import Licence, enrol_device, retire_device
        from verifier_support import identity_for

        with fleet.service.write() as s:
            enrol_device(s, identity_for(other), Licence(policy="in:DE"), "acme", ADMIN,
                         time.time_ns())  # fmt: skip
            retire_device(s, identity_for(other).device_id, "decommissioned", ADMIN, time.time_ns())
        run_sql(db_url, f"UPDATE records SET device_id = '{identity_for(other).device_id}' "
                        f"WHERE id = {out.record_id}")  # fmt: skip
        report = reverify(fleet.service, engine="local")
        assert [(f[0], f[2]) for f in report.failed] == [
            (out.record_id, "stored columns differ from the signed body")
        ]
        with fleet.service.read() as s:  # and the retired device is given no verdict
            retired = s.get(DeviceRow, identity_for(other).device_id)
            assert retired is not None and not retired.needs_verdict
            assert queries.latest_verdict(s, retired.id) is None
    finally:
        fleet.service.close()


def test_a_record_dated_before_its_landmarks_move_by_its_column_is_found(db_url: str) -> None:
    """Whether a row predates its landmark's move is read from the signed body, after the
    columns are compared with it: an edited measured_ns no longer hides a row from the pass."""
    fleet = make_fleet(db_url)
    try:
        (out,) = fleet.service.ingest([fleet.record("par1", 6.0)], ADMIN)
        run_sql(
            db_url,
            "UPDATE landmarks SET position_since_ns = 1000 WHERE id = 'par1'",
            f"UPDATE records SET measured_ns = 5 WHERE id = {out.record_id}",
        )
        report = reverify(fleet.service, engine="local")
        assert [(f[0], f[2]) for f in report.failed] == [
            (out.record_id, "stored columns differ from the signed body")
        ]
    finally:
        fleet.service.close()
