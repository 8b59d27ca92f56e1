"""The verifier's storage and logic, against SQLite and a real PostgreSQL (parametrised)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from lightfence.core.kinds import VerdictKind
from lightfence.verifier import alerts, audit_verify, crosscheck, db, queries, verdicts
from lightfence.verifier.auth import Role, authenticate, create_token, revoke_token
from lightfence.verifier.clock import now_ns
from lightfence.verifier.ingest import RejectReason
from lightfence.verifier.models import AlertRow, RecordRow, RejectionRow, VerdictRow
from record_factory import make_signed_record, seeded_key
from verifier_support import ADMIN, Fleet, db_url, identity_for, make_fleet

__all__ = ["db_url"]
DAY_NS = 86400 * 10**9


@pytest.fixture
def fleet(db_url: str) -> Iterator[Fleet]:
    f = make_fleet(db_url)
    yield f
    f.service.close()


def _count(fleet: Fleet, model: type) -> int:
    with fleet.service.read() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _latest(fleet: Fleet) -> VerdictRow:
    with fleet.service.read() as s:
        row = queries.latest_verdict(s, fleet.device_id)
    assert row is not None
    return row


def test_schema_migrates_in_place_and_is_at_head(fleet: Fleet) -> None:
    db.upgrade(fleet.service.db)  # a second start upgrades nothing and breaks nothing
    current, head = db.schema_revision(fleet.service.db)
    assert current == head != ""


def test_models_match_the_migrations(fleet: Fleet) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from lightfence.verifier.models import Base

    with fleet.service.db.write_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_an_old_schema_upgrades_in_place_keeping_its_rows(db_url: str) -> None:
    old = db.Database(db_url)
    db.upgrade(old, "0001")
    with old.write_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO landmarks (id, lat, lon, position_error_km, public_key, key_id, "
                "operator, status, created_ns, updated_ns) "
                "VALUES ('old1', 1.0, 2.0, 0.0, :k, :i, 'op', 'active', 5, 7)"
            ),
            {"k": "00" * 32, "i": "00" * 16},
        )
    db.upgrade(old)
    assert db.schema_revision(old)[0] == db.schema_revision(old)[1]
    with old.read_engine.connect() as conn:
        since = conn.execute(text("SELECT position_since_ns FROM landmarks")).scalar_one()
    assert since == 7
    old.dispose()


def test_records_from_before_a_resurvey_stop_counting(fleet: Fleet) -> None:
    from lightfence.verifier.registry import LandmarkSpec, put_landmark

    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    assert _latest(fleet).kind == VerdictKind.VERIFIED
    key = fleet.landmark_keys["fra1"].public_bytes.hex()
    with fleet.service.write() as s:  # fra1 moved 300 km: its old RTTs say nothing now
        put_landmark(s, LandmarkSpec("fra1", 48.14, 11.58, key, "lf-net"), ADMIN, now_ns())
    fleet.service.recompute_all()
    latest = _latest(fleet)
    assert latest.kind == VerdictKind.UNVERIFIED and latest.inputs == []


def test_same_record_twice_is_stored_once(fleet: Fleet) -> None:
    rec = fleet.record("fra1", 0.5)
    first = fleet.service.ingest([rec], ADMIN)
    again = fleet.service.ingest([rec, rec], ADMIN)
    assert first[0].status == "stored"
    assert [o.status for o in again] == ["duplicate", "duplicate"]
    assert {o.record_id for o in again} == {first[0].record_id}
    assert _count(fleet, RecordRow) == 1


def test_verified_refuted_inconsistent_come_from_the_core(db_url: str) -> None:
    f = make_fleet(db_url)
    f.service.ingest([f.record("fra1", 0.5)], ADMIN)  # within 75 km of Frankfurt: in DE
    assert f.service.recompute_all() == 1
    row = _latest(f)
    assert row.kind == VerdictKind.VERIFIED
    # The stored verdict recomputed through core.decide gives the same answer and a region.
    v = verdicts.verdict_of(row)
    assert v is not None and v.kind.value == row.kind
    assert v.feasible_geojson()["type"] in (
        "Feature",
        "FeatureCollection",
        "Polygon",
        "MultiPolygon",
    )
    f.service.ingest([f.record("waw1", 0.5)], ADMIN)  # Warsaw too: no common point
    f.service.recompute_all()
    assert _latest(f).kind == VerdictKind.INCONSISTENT
    with f.service.read() as s:
        kinds = [a["kind"] for a in queries.list_alerts(s, ADMIN)]
    assert alerts.AlertKind.INCONSISTENT in kinds
    # A second device declares France but answers Frankfurt's landmark in 0.5 ms.
    from lightfence.verifier.registry import Licence, enrol_device

    fr_key = seeded_key("device-fr")
    with f.service.write() as s:
        enrol_device(s, identity_for(fr_key), Licence("outside:CN", declared_country="FR"),
                     "acme", ADMIN, now_ns())  # fmt: skip
    f.service.ingest([f.record("fra1", 0.5, device_key=fr_key)], ADMIN)
    f.service.recompute_all()
    with f.service.read() as s:
        fr = queries.latest_verdict(s, identity_for(fr_key).device_id)
        assert fr is not None and fr.kind == VerdictKind.REFUTED
        assert any(a["kind"] == "refuted" for a in queries.list_alerts(s, ADMIN))
    f.service.close()


def _reason(fleet: Fleet, rec: object) -> RejectReason | None:
    (out,) = fleet.service.ingest([rec], ADMIN)  # type: ignore[list-item]
    assert out.status == "rejected", out
    return out.reason


def test_rejections_are_kept_with_their_reason(fleet: Fleet) -> None:
    from dataclasses import replace

    good = fleet.record("fra1", 0.5)
    fleet.service.ingest([good], ADMIN)
    stranger = seeded_key("stranger")
    cases = {
        RejectReason.UNKNOWN_LANDMARK: make_signed_record(
            stranger, fleet.device_key, landmark_id="nyc1", identity=identity_for(fleet.device_key),
            measured_at_unix_ns=time.time_ns(),
        ),
        RejectReason.UNKNOWN_DEVICE: fleet.record("fra1", 0.5, device_key=stranger),
        RejectReason.BAD_SIGNATURE: replace(
            fleet.record("par1", 5.0), landmark_signature=bytes(64)
        ),
        RejectReason.IDENTITY_CHANGE: fleet.record(
            "fra1", 0.5, device_key=stranger, identity=fleet.identity
        ),
        RejectReason.STALE: fleet.record("ams1", 3.0, measured_at_ns=time.time_ns() - 3 * DAY_NS),
        RejectReason.REPLAYED: fleet.record("fra1", 0.7, session_id=good.session_id),
    }  # fmt: skip
    for reason, rec in cases.items():
        assert _reason(fleet, rec) is reason
    future = fleet.record("ams1", 3.0, measured_at_ns=time.time_ns() + 3600 * 10**9)
    assert _reason(fleet, future) is RejectReason.STALE
    assert _count(fleet, RecordRow) == 1
    # Both stale records (same token, landmark, device, reason) share one counted row.
    assert _count(fleet, RejectionRow) == len(cases)
    with fleet.service.read() as s:
        assert sum(r["count"] for r in queries.rejections(s, ADMIN, 100)) == len(cases) + 1
        kinds = {a["kind"] for a in queries.list_alerts(s, ADMIN)}
        report = audit_verify.verify_chain(s)
    assert {"rejected_evidence", "identity_change"} <= kinds
    assert report.ok


def test_identity_change_on_enrolment_of_a_new_key_for_the_same_gpu(fleet: Fleet) -> None:
    from lightfence.identity.device import DeviceIdentity
    from lightfence.verifier.registry import Licence, enrol_device

    new_key = seeded_key("device-0-reprovisioned")
    ident = DeviceIdentity(
        "nvml", fleet.identity.trust_level, new_key.public_bytes, fleet.identity.attributes
    )
    with fleet.service.write() as s:
        enrol_device(s, ident, Licence("in:DE", declared_country="DE"), "acme", ADMIN, now_ns())
    with fleet.service.read() as s:
        assert [a["kind"] for a in queries.list_alerts(s, ADMIN)] == ["identity_change"]


def test_mis_surveyed_landmark_is_flagged_and_stops_counting(fleet: Fleet) -> None:
    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    assert _latest(fleet).kind == VerdictKind.VERIFIED
    # fra1 answers its peers faster than light allows over the surveyed distances: its
    # surveyed position is wrong. Honest peers report physical RTTs among themselves.
    report = [
        ("fra1", [("par1", 1.0), ("ams1", 1.0), ("waw1", 2.0)]),
        ("par1", [("ams1", 8.0), ("waw1", 20.0)]),
        ("ams1", [("waw1", 15.0)]),
    ]
    now = now_ns()
    flagged: list[str] = []
    with fleet.service.write() as s:
        for lid, peers in report:
            rtts = [crosscheck.PeerRtt(p, ms, now) for p, ms in peers]
            flagged += crosscheck.report_peer_rtts(s, lid, rtts, ADMIN, now)
    assert flagged == ["fra1"]
    fleet.service.recompute_all()
    latest = _latest(fleet)
    assert latest.kind == VerdictKind.UNVERIFIED and latest.inputs == []
    (out,) = fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    assert out.reason is RejectReason.FLAGGED_LANDMARK
    with fleet.service.read() as s:
        health = {h["id"]: h for h in crosscheck.health(s)}
    assert health["fra1"]["status"] == "flagged"
    assert health["par1"]["status"] == "active"
    from lightfence.verifier.registry import set_landmark_status

    with fleet.service.write() as s:
        set_landmark_status(s, "fra1", "active", "re-surveyed", ADMIN, now_ns())
    fleet.service.recompute_all()
    assert _latest(fleet).kind == VerdictKind.VERIFIED


def test_a_change_during_recompute_is_not_lost(fleet: Fleet) -> None:
    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    with fleet.service.read() as s:
        pending = verdicts.read_pending(s, fleet.service.config)
    decided = verdicts.decide_pending(pending)
    fleet.service.ingest([fleet.record("waw1", 0.5)], ADMIN)  # arrives mid-computation
    with fleet.service.write() as s:
        assert verdicts.store_decided(s, decided, now_ns()) == []
    assert fleet.service.recompute_all() == 1
    assert _latest(fleet).kind == VerdictKind.INCONSISTENT


def test_older_records_grow_by_the_movement_allowance(fleet: Fleet) -> None:
    t = time.time_ns()
    fleet.service.ingest(
        [fleet.record("fra1", 0.5, measured_at_ns=t - 600 * 10**9), fleet.record("par1", 5.0)],
        ADMIN,
    )
    with fleet.service.read() as s:
        (p,) = verdicts.read_pending(s, fleet.service.config)
    errors = {i.landmark_id: i.position_error_km for i in p.inputs}
    assert errors["par1"] == pytest.approx(0.0, abs=1e-6)
    assert errors["fra1"] == pytest.approx(1000.0 * 600 / 3600, rel=1e-3)


def test_missed_checkin_alerts_once(fleet: Fleet) -> None:
    later = now_ns() + 2 * 86400 * 10**9
    with fleet.service.write() as s:
        assert alerts.sweep_missed_checkins(s, later) == 1
    with fleet.service.write() as s:
        assert alerts.sweep_missed_checkins(s, later) == 0
    assert _count(fleet, AlertRow) == 1


def test_audit_chain_detects_edits_and_deletions(fleet: Fleet) -> None:
    fleet.service.ingest([fleet.record("fra1", 0.5), fleet.record("par1", 5.0)], ADMIN)
    with fleet.service.read() as s:
        assert audit_verify.verify_chain(s).ok
    with fleet.service.db.write_engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    with fleet.service.read() as s:
        report = audit_verify.verify_chain(s)
    assert not report.ok and any("entry 3" in p for p in report.problems)
    with fleet.service.db.write_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    with fleet.service.read() as s:
        assert any("missing" in p for p in audit_verify.verify_chain(s).problems)


def test_audit_chain_detects_dropped_newest_entries(fleet: Fleet) -> None:
    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    with fleet.service.db.write_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)"))
    with fleet.service.read() as s:
        assert any("newest" in p for p in audit_verify.verify_chain(s).problems)


def test_tokens_are_hashed_and_revocable(fleet: Fleet) -> None:
    with fleet.service.write() as s:
        secret = create_token(
            s, name="lm", role=Role.LANDMARK, owner="fra1", actor="test", now_ns=now_ns()
        )
    with fleet.service.read() as s:
        stored = s.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
        who = authenticate(s, secret)
    assert secret not in stored and who is not None and who.owner == "fra1"
    with fleet.service.write() as s:
        revoke_token(s, name="lm", actor="test", now_ns=now_ns())
    with fleet.service.read() as s:
        assert authenticate(s, secret) is None


@settings(max_examples=200, deadline=None)
@given(
    min_rtt_ns=st.integers(1, 10**12),
    error_km=st.floats(0, 20_000, allow_nan=False),
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
)
def test_stored_verdict_input_reads_back_exactly(
    min_rtt_ns: int, error_km: float, lat: float, lon: float
) -> None:
    # The stored document says rtt_ms (the core's unit); reading it back must give the very
    # nanoseconds it was written from, or a recomputed verdict could differ from the stored one.
    item = verdicts.VerdictInput(7, "fra1", lat, lon, min_rtt_ns, error_km, 123)
    doc = json.loads(json.dumps(item.to_json_dict()))
    back = verdicts.VerdictInput.from_json_dict(doc)
    assert back == item
    assert back.rtt_ms == doc["rtt_ms"]
