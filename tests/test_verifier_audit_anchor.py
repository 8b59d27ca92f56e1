"""Issue 17, finding 6: the audit chain anchored outside the database, and the state tables
bound to it. Each attack of the red team, by direct SQL on the real database (SQLite and
PostgreSQL), must now be reported by `audit verify`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from typer.testing import CliRunner

from lightfence.cli.app import app
from lightfence.crypto.keys import SigningKey
from lightfence.verifier import audit, audit_verify, checkpoint
from lightfence.verifier.audit import entry_hash
from lightfence.verifier.auth import Role, create_token, revoke_token
from lightfence.verifier.clock import now_ns
from lightfence.verifier.models import AuditRow
from lightfence.verifier.registry import Licence, set_landmark_status, set_licence
from verifier_support import ADMIN, Fleet, audit_problems, db_url, make_fleet, run_sql

__all__ = ["db_url"]


def _busy_fleet(url: str, tmp_path: Path) -> tuple[Fleet, SigningKey, Path]:
    """A verifier that did a bit of everything, with a signed checkpoint of its head."""
    key_path, out = tmp_path / "verifier.key", tmp_path / "checkpoints.jsonl"
    fleet = make_fleet(url, signing_key_path=str(key_path), checkpoint_path=str(out))
    svc = fleet.service
    svc.ingest([fleet.record(lm, rtt) for lm, rtt in (("fra1", 0.5), ("par1", 5.0))], ADMIN)
    svc.recompute_all()
    with svc.write() as s:
        create_token(s, name="ops", role=Role.OPERATOR, owner="acme", actor="t", now_ns=now_ns())
        create_token(s, name="old", role=Role.AUDITOR, owner=None, actor="t", now_ns=now_ns())
        revoke_token(s, name="old", actor="t", now_ns=now_ns())
        set_landmark_status(s, "waw1", "flagged", "by hand", ADMIN, now_ns())
        set_landmark_status(s, "waw1", "active", "reviewed", ADMIN, now_ns())
        set_licence(s, fleet.device_id, Licence(policy="in:DE", declared_country="DE"), ADMIN,
                    now_ns())  # fmt: skip
    svc.recompute_all()
    assert svc.checkpoint() is not None
    assert svc.signing_key is not None
    return fleet, svc.signing_key, out


def _rehash_from(url: str, seq: int) -> None:
    """What an attacker with database access does after editing entry `seq`: recompute every
    hash from there on and move the head, so the chain is self-consistent again."""
    engine = create_engine(url)
    with engine.begin() as conn:
        prev = (
            conn.execute(select(AuditRow.hash).where(AuditRow.seq == seq - 1)).scalar_one_or_none()
            or audit.GENESIS_HASH
        )
        rows = conn.execute(select(AuditRow).where(AuditRow.seq >= seq).order_by(AuditRow.seq))
        last = (seq - 1, prev)
        for r in rows.all():
            h = entry_hash(prev, r.seq, r.at_ns, r.actor, r.action, r.subject, r.payload)
            conn.execute(
                text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": prev, "h": h, "s": r.seq},
            )
            prev, last = h, (r.seq, h)
        conn.execute(
            text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"),
            {"s": last[0], "h": last[1]},
        )
    engine.dispose()


def test_everyday_writes_verify_against_chain_and_checkpoint(db_url: str, tmp_path: Path) -> None:
    fleet, key, cp = _busy_fleet(db_url, tmp_path)
    assert audit_problems(fleet, cp) == []
    with fleet.service.read() as s:
        report = checkpoint.check(s, checkpoint.read_file(cp), key.public_bytes.hex())
        assert report.problems == [] and report.key_ids == (key.key_id,)
        other = SigningKey.generate().public_bytes.hex()
        assert "another key" in checkpoint.check(s, checkpoint.read_file(cp), other).problems[0]
    fleet.service.close()


def test_tail_cut_and_head_rewind_is_caught_by_the_checkpoint(db_url: str, tmp_path: Path) -> None:
    fleet, _, cp = _busy_fleet(db_url, tmp_path)
    with fleet.service.read() as s:
        head = s.execute(text("SELECT seq FROM audit_head")).scalar_one()
        keep = s.execute(select(AuditRow).where(AuditRow.seq == head - 3)).scalar_one()
    run_sql(
        db_url,
        f"DELETE FROM audit_log WHERE seq > {keep.seq}",
        f"UPDATE audit_head SET seq = {keep.seq}, hash = '{keep.hash}' WHERE id = 1",
    )
    problems = audit_problems(fleet, cp)
    assert any("cut off and the head rewound" in p for p in problems), problems
    fleet.service.close()


def test_full_rehash_is_caught_by_the_checkpoint(db_url: str, tmp_path: Path) -> None:
    fleet, _, cp = _busy_fleet(db_url, tmp_path)
    with fleet.service.read() as s:
        entry = (
            s.execute(
                select(AuditRow).where(AuditRow.action == "token.create").order_by(AuditRow.seq)
            )
            .scalars()
            .first()
        )
        assert entry is not None
    forged = json.dumps({**json.loads(entry.payload), "role": "admin"}, separators=(",", ":"))
    run_sql(db_url, f"UPDATE audit_log SET payload = '{forged}' WHERE seq = {entry.seq}")
    _rehash_from(db_url, entry.seq)
    with fleet.service.read() as s:
        assert audit_verify.verify_chain(s, state=False).ok  # the chain alone is fooled...
    problems = audit_problems(fleet, cp)
    assert any("rewritten (re-hashed)" in p for p in problems), problems  # ...not the anchor
    fleet.service.close()


def test_direct_edits_of_state_tables_are_caught(db_url: str, tmp_path: Path) -> None:
    fleet, _, _ = _busy_fleet(db_url, tmp_path)
    dev = fleet.device_id
    run_sql(
        db_url,
        "UPDATE verdicts SET kind = 'VERIFIED', reason = 'fine' "
        "WHERE id = (SELECT MIN(id) FROM verdicts)",
        f"UPDATE devices SET policy = 'outside:XX', operator = 'mallory' WHERE id = '{dev}'",
        "UPDATE api_tokens SET role = 'admin', owner = NULL WHERE name = 'ops'",
        "UPDATE api_tokens SET revoked_ns = NULL WHERE name = 'old'",
        "UPDATE landmarks SET lat = 1.0 WHERE id = 'fra1'",
        "INSERT INTO api_tokens (name, role, owner, token_hash, created_ns) "
        f"VALUES ('backdoor', 'admin', NULL, '{'ab' * 32}', 1)",
    )
    problems = audit_problems(fleet)
    expect = [
        "verdicts row", f"devices row {dev} differs", "api_tokens row ops differs",
        "api_tokens row old differs", "landmarks row fra1 differs",
        "api_tokens row backdoor has no audit entry",
    ]  # fmt: skip
    for words in expect:
        assert any(words in p for p in problems), (words, problems)
    fleet.service.close()


def test_deleted_verdict_is_caught(db_url: str, tmp_path: Path) -> None:
    fleet, _, _ = _busy_fleet(db_url, tmp_path)
    run_sql(db_url, "DELETE FROM verdicts WHERE id = (SELECT MAX(id) FROM verdicts)")
    problems = audit_problems(fleet)
    assert any("verdicts row" in p and "deleted" in p for p in problems), problems
    fleet.service.close()


def test_cli_checkpoint_and_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    fleet, _, _ = _busy_fleet(url, tmp_path)
    fleet.service.close()
    run = CliRunner().invoke
    cp = tmp_path / "cli-checkpoints.jsonl"
    key = str(tmp_path / "verifier.key")
    made = run(app, ["audit", "checkpoint", "--db", url, "--signing-key", key, "--out", str(cp)])
    assert made.exit_code == 0 and "appended" in made.output
    ok = run(app, ["audit", "verify", "--db", url, "--checkpoint", str(cp)])
    assert ok.exit_code == 0 and "matches 1 signed checkpoint" in ok.output, ok.output
    plain = run(app, ["audit", "verify", "--db", url])
    assert plain.exit_code == 0 and "no --checkpoint given" in plain.output
    run_sql(url, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3")
    _rehash_from(url, 3)
    broken = run(app, ["audit", "verify", "--db", url, "--checkpoint", str(cp)])
    assert broken.exit_code == 1 and "re-hashed" in broken.output
    missing = run(app, ["audit", "verify", "--db", url, "--checkpoint", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_rows_from_before_0004_get_a_baseline_and_are_checked_from_then_on(db_url: str) -> None:
    from lightfence.verifier import db

    old = db.Database(db_url)
    db.upgrade(old, "0003")
    with old.write_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO devices (id, operator, provider, trust_level, public_key, key_id, "
                "attributes, policy, bound, checkin_interval_s, enrolled_ns, needs_verdict, "
                "dirty_seq) VALUES ('d1', 'op', 'nvml', 'gpu_bound', :k, :i, '{\"a\": \"b\"}', "
                "'in:DE', 'vacuum', 60, 1, false, 0)"
            ),
            {"k": "00" * 32, "i": "00" * 16},
        )
        conn.execute(
            text(
                "INSERT INTO verdicts (device_id, kind, reason_code, reason, policy, bound, "
                "as_of_ns, computed_ns, inputs) VALUES ('d1', 'UNVERIFIED', 1, 'old', 'in:DE', "
                "'vacuum', 1, 2, '[{\"rtt_ms\": 1.5}]')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO rejections (received_ns, reason, detail, submitted_by, body) "
                "VALUES (7, 'stale', 'old', 'x', '{}')"
            )
        )
    db.upgrade(old)
    with old.read() as s:
        assert audit_verify.verify_chain(s).ok, audit_verify.verify_chain(s).problems
        baseline = s.execute(
            select(AuditRow).where(AuditRow.action == "state.baseline")
        ).scalar_one()
        assert '"devices","d1"' in baseline.payload
        first, count = s.execute(text("SELECT first_received_ns, count FROM rejections")).one()
        assert (first, count) == (7, 1)
    with old.write_engine.begin() as conn:
        conn.execute(text("UPDATE verdicts SET kind = 'VERIFIED'"))
    with old.read() as s:
        assert any("verdicts row" in p for p in audit_verify.verify_chain(s).problems)
    old.dispose()


def test_the_service_exports_checkpoints_to_its_file_and_webhook(tmp_path: Path) -> None:
    """The worker's checkpoints reach the file and the webhook (real HTTP on loopback); the
    service writes a last one when it stops; an unmoved head is not checkpointed again."""
    import time

    from fastapi.testclient import TestClient

    from http_stub import stub_verifier
    from lightfence.verifier.api.app import create_app
    from lightfence.verifier.config import VerifierConfig

    url = f"sqlite:///{tmp_path}/v.db"
    make_fleet(url).service.close()
    out = tmp_path / "cp.jsonl"
    with stub_verifier(status=200) as (hook, received):
        config = VerifierConfig(
            db_url=url,
            signing_key_path=str(tmp_path / "verifier.key"),
            checkpoint_path=str(out),
            checkpoint_webhook_url=f"{hook}/checkpoints",
            checkpoint_interval_s=0.05,
        )
        app = create_app(config)  # with its background worker
        with TestClient(app) as client:
            deadline = time.monotonic() + 30
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.get("/healthz").status_code == 200
            assert app.state.service.checkpoint() is None  # head unmoved: nothing new
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    docs = checkpoint.read_file(out)
    assert len(docs) == 1 and docs[0]["seq"] > 0
    assert received and received[0][0] == "/checkpoints"
    assert received[0][2] == {"checkpoint": docs[0]}
    from lightfence.verifier.service import Service

    svc = Service(VerifierConfig(db_url=url))
    with svc.read() as s:
        assert checkpoint.check(s, docs).problems == []
    svc.close()


def test_a_licences_gpu_fields_and_what_a_verdict_locates_are_covered(
    db_url: str, tmp_path: Path
) -> None:
    """Each edit alone would buy a false VERIFIED that locates the GPU, or a token saying so:
    another chip's rounds counted for the device (gpu_id), a licence that required the GPU
    decided on the key (require_locates), a retired device decided again (retired_ns), a key
    verdict passed off as a GPU one (locates)."""
    fleet, _, _ = _busy_fleet(db_url, tmp_path)
    dev = fleet.device_id
    latest = "(SELECT MAX(id) FROM verdicts)"
    for edit, undo, words in [
        (f"gpu_id = '{'ab' * 16}'", "gpu_id = NULL", f"devices row {dev} differs"),
        ("require_locates = 'gpu'", "require_locates = 'key'", f"devices row {dev} differs"),
        ("retired_ns = 1", "retired_ns = NULL", f"devices row {dev} differs"),
        ("locates = 'gpu'", "locates = 'key'", "verdicts row"),
        ("gpu_kind = 'VERIFIED'", "gpu_kind = NULL", "verdicts row"),
    ]:
        where = f"id = '{dev}'" if "verdicts" not in words else f"id = {latest}"
        table = "verdicts" if "verdicts" in words else "devices"
        run_sql(db_url, f"UPDATE {table} SET {edit} WHERE {where}")
        problems = audit_problems(fleet)
        assert any(words in p for p in problems), (edit, problems)
        run_sql(db_url, f"UPDATE {table} SET {undo} WHERE {where}")
        assert audit_problems(fleet) == [], edit
    fleet.service.close()


def test_rows_digested_before_0010_verify_after_its_baseline(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verifier that ran before migration 0010 recorded digests over the older column lists;
    after the migration its log verifies, and the newly covered columns are checked."""
    from dataclasses import replace

    from lightfence.verifier import db, statehash

    newer = {"gpu_id", "require_locates", "retired_ns", "locates", "key_kind", "gpu_kind",
             "gpu_inputs", "alert"}  # fmt: skip
    older = {
        name: replace(c, columns=tuple(col for col in c.columns if col not in newer))
        for name, c in statehash.COVERED.items()
    }
    monkeypatch.setattr(statehash, "COVERED", older)
    fleet, _, _ = _busy_fleet(db_url, tmp_path)
    fleet.service.close()
    monkeypatch.undo()
    again = db.Database(db_url)
    with again.read() as s:  # the older digests against the newer lists: all differ
        assert not audit_verify.verify_chain(s).ok
    run_sql(db_url, "UPDATE alembic_version SET version_num = '0009'")
    db.upgrade(again)
    with again.read() as s:
        assert audit_verify.verify_chain(s).ok, audit_verify.verify_chain(s).problems
    again.dispose()
    # The same, with rows edited with SQL before the upgrade: the baseline does not bless them.
    run_sql(
        db_url,
        "UPDATE alembic_version SET version_num = '0009'",
        "UPDATE verdicts SET reason = 'all fine' WHERE id = (SELECT MIN(id) FROM verdicts)",
        "UPDATE landmarks SET lat = 1.0 WHERE id = 'fra1'",
    )
    db.upgrade(again)
    with again.read() as s:
        problems = audit_verify.verify_chain(s).problems
    assert len(problems) == 2, problems
    assert any("verdicts row" in p for p in problems) and any("fra1" in p for p in problems)
    run_sql(db_url, "UPDATE landmarks SET lat = 50.11 WHERE id = 'fra1'")  # fmt: skip
    run_sql(db_url, f"UPDATE devices SET gpu_id = '{'ab' * 16}' WHERE id = '{fleet.device_id}'")
    again = db.Database(db_url)
    with again.read() as s:
        assert any("devices row" in p for p in audit_verify.verify_chain(s).problems)
    again.dispose()


def test_evidence_rows_inserted_replaced_deleted_or_marked_outside_are_caught(
    db_url: str, tmp_path: Path
) -> None:
    """Records are not state digests, but each was stored by an entry naming its id and hash,
    and each mark was set by a re-verification entry: an attacker who inserts a signed record
    the verifier never stored, deletes one that refutes, or marks an honest one invalid (so it
    counts for nothing) is reported."""
    fleet, _, _ = _busy_fleet(db_url, tmp_path)
    with fleet.service.read() as s:
        first, last = s.execute(text("SELECT MIN(id), MAX(id) FROM records")).one()
    columns = (
        "record_hash, device_id, landmark_id, session_id, min_rtt_ns, measured_ns, received_ns, "
        "submitted_by, body"
    )
    run_sql(
        db_url,
        f"INSERT INTO records ({columns}) SELECT '{'cd' * 32}', device_id, landmark_id, "
        f"'{'ef' * 16}', min_rtt_ns, measured_ns, received_ns, submitted_by, body FROM records "
        f"WHERE id = {first}",
        f"UPDATE records SET invalid_ns = 1 WHERE id = {first}",
        f"DELETE FROM records WHERE id = {last}",
    )
    problems = audit_problems(fleet)
    for words in (
        "has no audit entry: inserted outside",
        f"records row {first} is marked invalid, but not by re-verification",
        f"records row {last} was stored, then deleted outside",
    ):
        assert any(words in p for p in problems), (words, problems)
    fleet.service.close()


def test_a_deleted_rows_reused_id_and_an_id_below_one_are_caught(
    db_url: str, tmp_path: Path
) -> None:
    """Deleting the newest (refuting) record and letting the next honest one take its id (SQLite
    reuses the highest id; on PostgreSQL the attacker winds the sequence back) leaves a store
    entry for every row; the id stored twice gives it away. A row inserted with id 0 or below
    is below any baseline's floor and still reported."""
    fleet, _, _ = _busy_fleet(db_url, tmp_path)
    with fleet.service.read() as s:
        last = s.execute(text("SELECT MAX(id) FROM records")).scalar_one()
    run_sql(db_url, f"DELETE FROM records WHERE id = {last}")
    if not db_url.startswith("sqlite"):
        run_sql(db_url, f"SELECT setval(pg_get_serial_sequence('records', 'id'), {last - 1})")
    (out,) = fleet.service.ingest([fleet.record("ams1", 4.0)], ADMIN)
    assert out.record_id == last
    run_sql(
        db_url,
        "INSERT INTO records (id, record_hash, device_id, landmark_id, session_id, min_rtt_ns, "
        f"measured_ns, received_ns, submitted_by, body) SELECT 0, '{'cd' * 32}', device_id, "
        f"landmark_id, '{'ef' * 16}', min_rtt_ns, measured_ns, received_ns, submitted_by, body "
        f"FROM records WHERE id = {last}",
    )
    problems = audit_problems(fleet)
    for words in (
        f"records row {last} was stored twice",
        "records row 0 has no audit entry: inserted outside",
    ):
        assert any(words in p for p in problems), (words, problems)
    fleet.service.close()
