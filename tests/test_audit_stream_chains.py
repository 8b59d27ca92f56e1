"""Per-partition audit chains (issue 22): stream writers append to chains of their own, so
workers on different partitions do not queue on one lock, and `audit verify` and the signed
checkpoints still catch every edit, cut and forgery, in every chain, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from lightfence.model.canonical import canonical_json
from lightfence.verifier import alerts, audit, audit_verify, checkpoint, statehash
from lightfence.verifier.audit import AuditError, stream_entry_hash
from lightfence.verifier.clock import now_ns
from lightfence.verifier.models import AlertRow, AuditHeadRow, AuditStreamRow, VerdictRow
from lightfence.verifier.registry import set_landmark_status
from verifier_support import ADMIN, Fleet, audit_problems, db_url, make_fleet, run_sql

__all__ = ["db_url"]


def _streamed_fleet(url: str, tmp_path: Path) -> tuple[Fleet, dict[str, int], Path]:
    """Records and verdicts written on two stream chains, main-chain writes between them, and
    a signed checkpoint of every head."""
    out = tmp_path / "checkpoints.jsonl"
    fleet = make_fleet(
        url, signing_key_path=str(tmp_path / "verifier.key"), checkpoint_path=str(out)
    )
    svc = fleet.service
    chains = svc.open_chains(["kafka:t:0", "kafka:t:1"], "kafka/t")
    svc.ingest([fleet.record("fra1", 0.5)], ADMIN, chains=[chains["kafka:t:0"]])
    with svc.write() as s:
        set_landmark_status(s, "waw1", "flagged", "by hand", ADMIN, now_ns())
    svc.ingest([fleet.record("par1", 5.0)], ADMIN, chains=[chains["kafka:t:1"]])
    assert svc.recompute_all(chains=[chains["kafka:t:1"]]) == 1
    with svc.write() as s:
        set_landmark_status(s, "waw1", "active", "reviewed", ADMIN, now_ns())
    svc.ingest([fleet.record("ams1", 4.0)], ADMIN, chains=list(chains.values()))
    assert svc.recompute_all(chains=[chains["kafka:t:0"]]) == 1
    assert svc.checkpoint() is not None
    return fleet, chains, out


def _rehash_stream(url: str, chain: int, *, main_seq: int | None = None) -> None:
    """An attacker's repair of chain `chain` after an edit: every hash recomputed (and, given
    `main_seq`, every entry's main head moved there first), the head moved along."""
    engine = create_engine(url)
    with engine.begin() as conn:
        prev, seq = audit.GENESIS_HASH, 0
        rows = conn.execute(
            select(AuditStreamRow).where(AuditStreamRow.chain == chain).order_by(AuditStreamRow.seq)
        ).all()
        for r in rows:
            m = r.main_seq if main_seq is None else main_seq
            h = stream_entry_hash(prev, chain, r.seq, m, r.at_ns, r.actor, r.action, r.subject,
                                  r.payload)  # fmt: skip
            conn.execute(
                text(
                    "UPDATE audit_stream_log SET prev_hash = :p, hash = :h, main_seq = :m "
                    "WHERE chain = :c AND seq = :s"
                ),
                {"p": prev, "h": h, "m": m, "c": chain, "s": r.seq},
            )
            prev, seq = h, r.seq
        conn.execute(
            text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = :c"),
            {"s": seq, "h": prev, "c": chain},
        )
    engine.dispose()


def _append_forged(fleet: Fleet, url: str, chain: int, action: str, ref: list[str | None]) -> int:
    """What an attacker with database access appends at a stream chain's tail: an entry
    recording `ref` as the row is now, hashed and linked like a real one. Returns its seq."""
    with fleet.service.read() as s:
        head = s.get(AuditHeadRow, chain)
        main = s.get(AuditHeadRow, audit.MAIN_CHAIN)
        assert head is not None and main is not None
        seq, prev, main_seq = head.seq + 1, head.hash, main.seq
    payload = canonical_json({"state": [ref]})
    h = stream_entry_hash(prev, chain, seq, main_seq, 0, "system", action, "1", payload)
    run_sql(
        url,
        "INSERT INTO audit_stream_log (chain, seq, main_seq, at_ns, actor, action, subject, "
        f"payload, prev_hash, hash) VALUES ({chain}, {seq}, {main_seq}, 0, 'system', "
        f"'{action}', '1', '{payload}', '{prev}', '{h}')",
        f"UPDATE audit_head SET seq = {seq}, hash = '{h}' WHERE id = {chain}",
    )
    return seq


def test_stream_writes_land_in_their_chains_and_verify(db_url: str, tmp_path: Path) -> None:
    fleet, chains, cp = _streamed_fleet(db_url, tmp_path)
    with fleet.service.read() as s:
        report = audit_verify.verify_chain(s)
        per_chain = {
            c: s.execute(
                select(AuditStreamRow.action).where(AuditStreamRow.chain == c)
            ).scalars().all()
            for c in chains.values()
        }  # fmt: skip
        doc = checkpoint.make(s, fleet.service.signing_key, now_ns())  # type: ignore[arg-type]
    assert report.ok, report.problems
    assert report.chains == 3
    assert per_chain[chains["kafka:t:0"]] == ["record.store", "record.store", "verdict.store"]
    assert per_chain[chains["kafka:t:1"]] == ["record.store", "verdict.store"]
    assert doc is not None and [c for c, _, _ in doc["chains"]] == sorted(chains.values())
    assert audit_problems(fleet, cp) == []
    # Opening the same names again opens nothing new and writes nothing.
    with fleet.service.read() as s:
        before = audit.entry_count(s)
    assert fleet.service.open_chains(["kafka:t:1", "kafka:t:0"], "x") == chains
    with fleet.service.read() as s:
        assert audit.entry_count(s) == before


def test_a_registry_change_cannot_hide_in_a_stream_chain(db_url: str, tmp_path: Path) -> None:
    fleet, chains, _ = _streamed_fleet(db_url, tmp_path)
    sneaky = pytest.raises(AuditError, match="belongs on the main audit chain")
    with sneaky, fleet.service.write(chains=[chains["kafka:t:0"]]) as s:
        set_landmark_status(s, "fra1", "retired", "sneaky", ADMIN, now_ns())
    with pytest.raises(AuditError, match="not open"), fleet.service.write(chains=[99]):
        pass
    main = pytest.raises(AuditError, match="not the main one")
    with main, fleet.service.write(chains=[audit.MAIN_CHAIN]):
        pass
    assert audit_problems(fleet) == []


def test_every_kind_of_stream_chain_tampering_is_reported(db_url: str, tmp_path: Path) -> None:
    fleet, chains, cp = _streamed_fleet(db_url, tmp_path)
    c1 = chains["kafka:t:1"]

    # An edited entry.
    run_sql(db_url, f"UPDATE audit_stream_log SET actor = 'someone' WHERE chain = {c1} AND seq = 1")
    assert any(f"stream chain {c1}" in p and "was edited" in p for p in audit_problems(fleet))
    # ... re-hashed to match: the chain is consistent again, the signed checkpoint is not.
    _rehash_stream(db_url, c1)
    assert audit_problems(fleet) == []
    assert any("rewritten (re-hashed)" in p for p in audit_problems(fleet, cp))


def test_cut_forged_and_deleted_stream_chains_are_reported(db_url: str, tmp_path: Path) -> None:
    fleet, chains, cp = _streamed_fleet(db_url, tmp_path)
    c0, c1 = chains["kafka:t:0"], chains["kafka:t:1"]

    # The newest entry cut and the head rewound to match: only the checkpoint knows.
    with fleet.service.read() as s:
        last = s.get(AuditHeadRow, c0)
        assert last is not None
        top, before = last.seq, s.get(AuditStreamRow, (c0, last.seq - 1))
        assert before is not None
        rewound = before.hash
    run_sql(
        db_url,
        f"DELETE FROM audit_stream_log WHERE chain = {c0} AND seq = {top}",
        f"UPDATE audit_head SET seq = {top - 1}, hash = '{rewound}' WHERE id = {c0}",
    )
    found = audit_problems(fleet, cp)
    # The cut entry stored a verdict: that row has lost its record in the chains.
    assert any("verdicts row" in p and "no audit entry" in p for p in found), found
    assert any(f"stream chain {c0}, but that chain ends at entry {top - 1}" in p for p in found)

    # A whole chain deleted, head and all.
    run_sql(db_url, f"DELETE FROM audit_stream_log WHERE chain = {c1}",
         f"DELETE FROM audit_head WHERE id = {c1}")  # fmt: skip
    assert any(f"stream chain {c1} (kafka:t:1): its head was deleted" in p
               for p in audit_problems(fleet))  # fmt: skip

    # A chain forged from scratch (a head and an entry the verifier never opened).
    forged = stream_entry_hash(audit.GENESIS_HASH, 50, 1, 1, 0, "x", "record.store", "0", "{}")
    run_sql(
        db_url,
        f"INSERT INTO audit_head (id, seq, hash, name) VALUES (50, 1, '{forged}', 'kafka:t:9')",
        "INSERT INTO audit_stream_log (chain, seq, main_seq, at_ns, actor, action, subject, "
        f"payload, prev_hash, hash) VALUES (50, 1, 1, 0, 'x', 'record.store', '0', '{{}}', "
        f"'{audit.GENESIS_HASH}', '{forged}')",
    )
    assert any("stream chain 50 (kafka:t:9) was never opened" in p for p in audit_problems(fleet))
    # Its head renamed to forge a line of the report (the dashboard shows these lines).
    run_sql(db_url, "UPDATE audit_head SET name = 'x\naudit log intact' WHERE id = 50")
    lines = audit_problems(fleet)
    assert any("stream chain 50 (x\\naudit log intact)" in p for p in lines), lines
    assert all(p.isprintable() for p in lines)


def test_a_stream_entry_cannot_claim_a_main_head_from_the_future(
    db_url: str, tmp_path: Path
) -> None:
    """Where a stream entry falls among main entries decides which digest of a row is the
    latest; moving it past the main chain's end (to outrank a later registry write) is seen."""
    fleet, chains, _ = _streamed_fleet(db_url, tmp_path)
    _rehash_stream(db_url, chains["kafka:t:0"], main_seq=10**6)
    assert any("out of order" in p for p in audit_problems(fleet))


def test_a_registry_edit_recorded_by_a_forged_stream_entry_is_caught(
    db_url: str, tmp_path: Path
) -> None:
    """An attacker edits a licence with SQL and appends a stream entry recording the new row,
    placed after every main entry: the writer never records registry rows on a stream chain,
    so `audit verify` names the entry."""
    fleet, chains, _ = _streamed_fleet(db_url, tmp_path)
    c0 = chains["kafka:t:0"]
    run_sql(db_url, f"UPDATE devices SET policy = 'in:CN' WHERE id = '{fleet.device_id}'")
    with fleet.service.read() as s:
        assert any("devices row" in p for p in audit_verify.verify_chain(s).problems)
        ref = next(r for r in statehash.table_refs(s, "devices") if r[1] == fleet.device_id)
    seq = _append_forged(fleet, db_url, c0, "state.write", ref)
    found = audit_problems(fleet)
    assert any(f"entry {seq} records devices row" in p for p in found), found


def test_a_verdict_edited_after_a_stream_chain_stored_it_is_caught(
    db_url: str, tmp_path: Path
) -> None:
    fleet, _, _ = _streamed_fleet(db_url, tmp_path)
    with fleet.service.read() as s:
        vid = s.execute(select(VerdictRow.id).order_by(VerdictRow.id.desc())).scalars().first()
    run_sql(db_url, f"UPDATE verdicts SET kind = 'VERIFIED', reason = 'trust me' WHERE id = {vid}")
    assert any(f"verdicts row {vid} differs" in p for p in audit_problems(fleet))


def test_version_1_checkpoints_are_still_checked(db_url: str, tmp_path: Path) -> None:
    fleet, _, _ = _streamed_fleet(db_url, tmp_path)
    key = fleet.service.signing_key
    assert key is not None
    with fleet.service.read() as s:
        doc = checkpoint.make(s, key, now_ns())
        assert doc is not None
        old = {k: v for k, v in doc.items() if k not in ("chains", "signature")}
        old["version"] = 1
        old["signature"] = key.sign(checkpoint._signed_part(old)).hex()
        assert checkpoint.check(s, [old]).problems == []
        bad = {**doc, "chains": [[2, 1, "0" * 64]]}
        assert "signature does not verify" in checkpoint.check(s, [bad]).problems[0]


def test_stream_writers_run_side_by_side_and_main_writers_wait(db_url: str) -> None:
    """The locks themselves, on PostgreSQL: a stream write held open does not stop a write on
    another stream chain, but does stop a main-chain write until it ends; a second writer on
    the same chain waits too."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs every write transaction alone: nothing to overlap")
    fleet = make_fleet(db_url)
    svc = fleet.service
    chains = svc.open_chains(["kafka:t:0", "kafka:t:1"], "kafka/t")
    c0, c1 = chains["kafka:t:0"], chains["kafka:t:1"]
    holding, release = threading.Event(), threading.Event()
    done: dict[str, float] = {}

    def hold_stream_write() -> None:
        with svc.write(chains=[c0]) as s:
            audit.append(s, actor="t", action="test.hold", subject="", payload={}, now_ns=1)
            holding.set()
            release.wait(10)
        done["held"] = time.monotonic()

    def write(name: str, chains_: list[int]) -> None:
        with svc.write(chains=chains_) as s:
            audit.append(s, actor="t", action=f"test.{name}", subject="", payload={}, now_ns=2)
        done[name] = time.monotonic()

    holder = threading.Thread(target=hold_stream_write)
    holder.start()
    assert holding.wait(10)
    other = threading.Thread(target=write, args=("other_chain", [c1]))
    other.start()
    other.join(10)
    assert "other_chain" in done, "a write on another stream chain waited for the held one"
    # A main writer waits for the held stream write; once it waits, new stream writes queue
    # behind it (PostgreSQL grants lock requests in order), so registry changes are not starved.
    waiting = [
        threading.Thread(target=write, args=("same_chain", [c0])),
        threading.Thread(target=write, args=("main", [])),
    ]
    for t in waiting:
        t.start()
    time.sleep(0.5)
    assert "same_chain" not in done and "main" not in done
    release.set()
    holder.join(10)
    for t in waiting:
        t.join(10)
    assert done["same_chain"] >= done["held"] and done["main"] >= done["held"]
    assert audit_problems(fleet) == []


def test_a_deleted_chain_whose_id_is_taken_again_is_reported(db_url: str, tmp_path: Path) -> None:
    """Deleting the newest chain (head, entries and the verdicts it recorded) lets the next
    chain opened take its id; the second opening of one id names the deletion."""
    fleet, chains, _ = _streamed_fleet(db_url, tmp_path)
    c1 = chains["kafka:t:1"]
    with fleet.service.read() as s:
        rows = s.execute(select(AuditStreamRow.payload).where(AuditStreamRow.chain == c1))
        verdict_ids = [key for p in rows.scalars() for _, key, _ in audit_verify._state_refs(p)]
    statements = [f"DELETE FROM audit_stream_log WHERE chain = {c1}"]
    statements += [f"DELETE FROM verdicts WHERE id = {v}" for v in verdict_ids]
    run_sql(db_url, *statements, f"DELETE FROM audit_head WHERE id = {c1}")
    assert fleet.service.open_chains(["kafka:t:7"], "kafka/t") == {"kafka:t:7": c1}
    assert any(f"opens stream chain {c1} (kafka:t:7), opened before as kafka:t:1" in p
               for p in audit_problems(fleet))  # fmt: skip


def test_a_forged_stream_entry_recording_a_verdict_again_is_reported(
    db_url: str, tmp_path: Path
) -> None:
    """A verdict edited with SQL, then recorded again (as edited) by a stream entry appended at
    a chain's tail: stream entries record only the verdicts they insert, once."""
    fleet, chains, _ = _streamed_fleet(db_url, tmp_path)
    c0 = chains["kafka:t:0"]
    with fleet.service.read() as s:
        vid = s.execute(select(VerdictRow.id).order_by(VerdictRow.id)).scalars().first()
    run_sql(db_url, f"UPDATE verdicts SET reason = 'edited' WHERE id = {vid}")
    with fleet.service.read() as s:
        ref = next(r for r in statehash.table_refs(s, "verdicts") if r[1] == str(vid))
    _append_forged(fleet, db_url, c0, "verdict.store", ref)
    found = audit_problems(fleet)
    assert any(f"records verdicts row {vid}, which an earlier entry recorded" in p
               for p in found), found  # fmt: skip


def test_an_edited_entry_with_a_malformed_state_is_reported_not_raised(
    db_url: str, tmp_path: Path
) -> None:
    fleet, chains, _ = _streamed_fleet(db_url, tmp_path)
    c0 = chains["kafka:t:0"]
    run_sql(
        db_url, f"""UPDATE audit_stream_log SET payload = '{{"state": 5}}' WHERE chain = {c0}"""
    )
    run_sql(db_url, """UPDATE audit_log SET payload = '{"state": {"a": 1}}' WHERE seq = 2""")
    found = audit_problems(fleet)
    assert any("was edited" in p for p in found), found


def test_two_stream_writes_raising_one_alert_leave_one_open_alert(db_url: str) -> None:
    """One open alert per (kind, device): two stream writes that raise it at once take turns
    (an advisory lock per alert key), and the second counts on the first one's row."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs every write transaction alone: nothing to overlap")
    fleet = make_fleet(db_url)
    svc = fleet.service
    chains = svc.open_chains(["kafka:t:0", "kafka:t:1"], "kafka/t")
    raised, release = threading.Event(), threading.Event()

    def raise_in(chain: int, hold: bool) -> None:
        with svc.write(chains=[chain]) as s:
            alerts.raise_alert(s, kind=alerts.AlertKind.REJECTED_EVIDENCE, message="m",
                               device_id=None, now_ns=now_ns())  # fmt: skip
            if hold:
                raised.set()
                release.wait(10)

    first = threading.Thread(target=raise_in, args=(chains["kafka:t:0"], True))
    first.start()
    assert raised.wait(10)
    second = threading.Thread(target=raise_in, args=(chains["kafka:t:1"], False))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second raise did not wait for the first"
    release.set()
    first.join(10)
    second.join(10)
    with svc.read() as s:
        rows = s.execute(select(AlertRow.count).where(AlertRow.kind == "rejected_evidence"))
        assert rows.scalars().all() == [2]
    assert audit_problems(fleet) == []
