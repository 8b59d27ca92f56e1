"""Lying landmarks in the verifier service (issue 9): verdicts record f and the landmarks they
implicate, landmarks are scored over one verdict per device, flagged past the threshold, and
cleared by an admin. SQLite and a real PostgreSQL (parametrised)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.verifier import crosscheck, db, queries
from lightfence.verifier.blame import IMPLICATED
from lightfence.verifier.clock import now_ns
from lightfence.verifier.models import AlertRow, AuditRow, VerdictRow
from lightfence.verifier.registry import Licence, enrol_device, set_landmark_status
from record_factory import seeded_key
from verifier_support import ADMIN, Fleet, db_url, identity_for, make_fleet

__all__ = ["db_url"]

# A device truly at Frankfurt: honest RTTs to Paris (~480 km) and Amsterdam (~360 km) that
# light allows, and Warsaw (~900 km away) lying with 0.5 ms, as if the device were beside it.
HONEST_MS = {"fra1": 0.5, "par1": 6.0, "ams1": 5.0}
LIE_MS = 0.5


@pytest.fixture
def fleet(db_url: str) -> Iterator[Fleet]:
    f = make_fleet(db_url)
    yield f
    f.service.close()


def _device(fleet: Fleet, name: str) -> SigningKey:
    key = seeded_key(name)
    with fleet.service.write() as s:
        enrol_device(s, identity_for(key), Licence("in:DE", declared_country="DE"), "acme",
                     ADMIN, now_ns())  # fmt: skip
    return key


def _measure(fleet: Fleet, key: SigningKey, *, lie: bool = True) -> None:
    recs = [fleet.record(lid, ms, device_key=key) for lid, ms in HONEST_MS.items()]
    if lie:
        recs.append(fleet.record("waw1", LIE_MS, device_key=key))
    assert all(o.status == "stored" for o in fleet.service.ingest(recs, ADMIN))


def _latest(fleet: Fleet, key: SigningKey) -> VerdictRow:
    with fleet.service.read() as s:
        row = queries.latest_verdict(s, identity_for(key).device_id)
    assert row is not None
    return row


def _health(fleet: Fleet) -> dict[str, dict[str, object]]:
    with fleet.service.read() as s:
        return {h["id"]: h for h in crosscheck.health(s)}  # type: ignore[misc]


def test_inconsistent_verdict_stores_f_and_names_the_liar(fleet: Fleet) -> None:
    key = _device(fleet, "dev-a")
    _measure(fleet, key)
    fleet.service.recompute_all()
    row = _latest(fleet, key)
    assert row.kind == VerdictKind.INCONSISTENT
    assert row.tolerated_liars == 1 and row.liars == "auto"
    assert row.implicated == ["waw1"]
    assert "waw1" in row.reason and "tolerating 1 lying landmark" in row.reason
    # The stored reason is exactly core's (one phrasing), and the API shows f and the names.
    from lightfence.verifier.verdicts import verdict_of

    core = verdict_of(row)
    assert core is not None and core.reason == row.reason and core.implicated == ("waw1",)
    d = queries.verdict_dict(row)
    assert d["tolerated_liars"] == 1 and d["implicated_landmarks"] == ["waw1"]


def test_one_device_counts_once_however_many_records(fleet: Fleet) -> None:
    key = _device(fleet, "dev-a")
    for _ in range(4):  # a cloned key sending many lies still has one latest verdict
        _measure(fleet, key)
        fleet.service.recompute_all()
    waw = _health(fleet)["waw1"]
    assert waw["status"] == "active"
    assert waw["implicated"] == {"named": 1, "named_alone": 1, "blame": 1.0, "cleared_at_ns": None}


def test_liar_is_flagged_stops_counting_and_clearing_restores_it(fleet: Fleet) -> None:
    keys = [_device(fleet, f"dev-{i}") for i in range(3)]
    for key in keys[:2]:
        _measure(fleet, key)
    fleet.service.recompute_all()
    assert _health(fleet)["waw1"]["status"] == "active"  # 2 < 3 devices: not yet
    _measure(fleet, keys[2])
    fleet.service.recompute_all()
    waw = _health(fleet)["waw1"]
    assert waw["status"] == "flagged"
    assert str(waw["status_reason"]).startswith(IMPLICATED)
    assert waw["implicated"]["named_alone"] == 3  # type: ignore[index]  # frozen when flagged
    for name in ("fra1", "par1", "ams1"):
        assert _health(fleet)[name]["status"] == "active"
    with fleet.service.read() as s:
        alert = s.execute(select(AlertRow).where(AlertRow.landmark_id == "waw1")).scalar_one()
        assert alert.kind == "landmark_flagged" and IMPLICATED in alert.message
        actions = s.execute(select(AuditRow.action, AuditRow.actor)).all()
    assert ("landmark.flagged", "admin:blame-scoring") in [tuple(a) for a in actions]
    # Its records stop counting: the devices' verdicts recover from the honest rest.
    for key in keys:
        row = _latest(fleet, key)
        assert row.kind == VerdictKind.VERIFIED, row.reason
        assert "waw1" not in {i["landmark_id"] for i in row.inputs}
    # An admin clears it: its records count again; the lies it was reviewed for do not
    # re-flag it, a fresh lie (measured after the clear) does.
    with fleet.service.write() as s:
        set_landmark_status(s, "waw1", "active", "reviewed", ADMIN, now_ns())
    fleet.service.recompute_all()
    for key in keys:
        row = _latest(fleet, key)
        assert row.kind == VerdictKind.INCONSISTENT and row.implicated == ["waw1"]
    assert _health(fleet)["waw1"]["status"] == "active"
    for key in keys:
        _measure(fleet, key)
    fleet.service.recompute_all()
    assert _health(fleet)["waw1"]["status"] == "flagged"


def test_flagging_off_keeps_scores(db_url: str) -> None:
    f = make_fleet(db_url, implicated_flag_min_devices=0)
    try:
        for i in range(3):
            _measure(f, _device(f, f"dev-{i}"))
        f.service.recompute_all()
        waw = _health(f)["waw1"]
        assert waw["status"] == "active" and waw["implicated"]["named_alone"] == 3  # type: ignore[index]
    finally:
        f.service.close()


def test_old_verdicts_upgrade_to_0003_keeping_their_rows(db_url: str) -> None:
    old = db.Database(db_url)
    db.upgrade(old, "0002")
    with old.write_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO devices (id, operator, provider, trust_level, public_key, key_id, "
                "attributes, policy, bound, checkin_interval_s, enrolled_ns, needs_verdict, "
                "dirty_seq) VALUES ('d1', 'op', 'nvml', 'gpu_bound', :k, :i, '{}', 'in:DE', "
                "'vacuum', 60, 1, false, 0)"
            ),
            {"k": "00" * 32, "i": "00" * 16},
        )
        conn.execute(
            text(
                "INSERT INTO verdicts (device_id, kind, reason_code, reason, policy, bound, "
                "as_of_ns, computed_ns, inputs) VALUES ('d1', 'UNVERIFIED', 1, 'old', 'in:DE', "
                "'vacuum', 1, 2, '[]')"
            )
        )
    db.upgrade(old)
    assert db.schema_revision(old)[0] == db.schema_revision(old)[1]
    with old.read_engine.connect() as conn:
        row = conn.execute(
            text("SELECT reason, liars, tolerated_liars, implicated FROM verdicts")
        ).one()
        blame = conn.execute(text("SELECT implicated_alone, blame_since_ns FROM landmarks")).all()
    assert row[0] == "old" and row[1] is None and row[2] == 0
    assert row[3] in ([], "[]")
    assert blame == []
    old.dispose()


def test_verdict_passes_on_stream_chains_still_flag_the_liar(fleet: Fleet) -> None:
    """A stream worker's verdict pass may not change the registry inside its stream chain
    (verifier.audit): it rescores the counters there, and a landmark due to be flagged is
    flagged at once in a main-chain write; `rescore_blame` (a worker's start) catches up on one
    left due by a worker that died between the two."""
    from lightfence.verifier import audit_verify, blame, verdicts

    chain = fleet.service.open_chains(["kafka:t:0"], "kafka/t")["kafka:t:0"]
    keys = [_device(fleet, f"dev-{i}") for i in range(3)]
    for key in keys[:2]:
        _measure(fleet, key)
    fleet.service.recompute_all(chains=[chain])
    waw = _health(fleet)["waw1"]
    assert waw["status"] == "active" and waw["implicated"]["named_alone"] == 2  # type: ignore[index]
    _measure(fleet, keys[2])
    fleet.service.recompute_all(chains=[chain])
    assert _health(fleet)["waw1"]["status"] == "flagged"
    # Cleared and lied to again; the worker's verdict pass commits, and it dies before the
    # flagging write: the landmark is due and not flagged, until the next start.
    with fleet.service.write() as s:
        set_landmark_status(s, "waw1", "active", "reviewed", ADMIN, now_ns())
    for key in keys:
        _measure(fleet, key)
    with fleet.service.read() as s:
        pending = verdicts.read_pending(s, fleet.service.config)
    with fleet.service.write(chains=[chain]) as s:
        verdicts.store_decided(s, verdicts.decide_pending(pending), now_ns())
        assert blame.score(s, fleet.service.config, now_ns(), flag=False) == ["waw1"]
    assert _health(fleet)["waw1"]["status"] == "active"
    assert fleet.service.rescore_blame() == ["waw1"]
    assert _health(fleet)["waw1"]["status"] == "flagged"
    with fleet.service.read() as s:
        report = audit_verify.verify_chain(s)
    assert report.ok and report.chains == 2, report
