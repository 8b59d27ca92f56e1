"""Signed records through Kafka to verdicts: the real broker, the real PostgreSQL, real keys.

The crash test kills worker processes with SIGKILL inside a database transaction and between
the database commit and the offset commit; the broker test restarts a Tansu broker of its own
(never the shared one) in the middle of a stream. Each ends with every acknowledged record
stored once, every verdict in the history once, and the audit chain verifying.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from lightfence.fleet.signed_stream import SignedStreamConfig, SignedStreamWorker, parse_message
from lightfence.protocol.record import RecordError
from lightfence.protocol.record_topic import (
    PublishError,
    RecordPublisher,
    TopicAddressError,
    encode,
    parse_kafka_url,
)
from lightfence.verifier import audit_verify, queries
from lightfence.verifier.ingest import record_hash
from lightfence.verifier.models import DeviceRow, RecordRow, RejectionRow, VerdictRow
from lightfence.verifier.service import Service
from stream_signed_support import (
    check_store,
    create_topic,
    enrol_fleet,
    free_port,
    pg_schema,
    service_for,
    signed_records,
    start_tansu,
)
from verifier_support import ADMIN, LANDMARKS

HERE = Path(__file__).parent
KAFKA_ENV = "LIGHTFENCE_KAFKA_BOOTSTRAP"
TEST_SESSION_TIMEOUT_MS = 1500
"""How long the group waits for a killed member before handing its partitions on: each kill
costs this much wall time. librdkafka heartbeats from its own thread, so a busy test machine
does not make a live member miss it."""


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_schema() as url:
        yield url


def _shared_bootstrap() -> str:
    given = os.environ.get(KAFKA_ENV)
    if not given:
        pytest.skip(f"!!! {KAFKA_ENV} is not set: scripts/start-kafka.sh starts the test broker")
    return given


def _done(service: Service, expected: int) -> bool:
    """All `expected` records stored and no device awaiting a verdict."""
    with service.read() as s:
        stored = s.execute(select(func.count()).select_from(RecordRow)).scalar_one()
        waiting = s.execute(
            select(func.count()).select_from(DeviceRow).where(DeviceRow.needs_verdict.is_(True))
        ).scalar_one()
    return bool(stored >= expected and waiting == 0)


def _run_until_done(
    service: Service,
    config: SignedStreamConfig,
    expected: int,
    timeout_s: float = 40.0,
    min_messages: int = 0,
) -> SignedStreamWorker:
    worker = SignedStreamWorker(service, config)
    deadline = time.monotonic() + timeout_s
    last_check = [0.0]

    def should_stop() -> bool:
        if time.monotonic() > deadline:
            raise AssertionError("the stream did not finish in time")
        if time.monotonic() - last_check[0] < 0.1:
            return False
        last_check[0] = time.monotonic()
        return worker.stats.messages >= min_messages and _done(service, expected)

    worker.run(should_stop)
    return worker


def _killed_worker(url: str, bootstrap: str, topic: str, group: str, point: str) -> str:
    """A worker process that SIGKILLs itself at `point` of its second batch."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, str(HERE / "signed_worker_proc.py"), url, bootstrap, topic, group]
    argv += ["10", point, "2", "30"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    print(f"killed worker ran {time.monotonic() - t0:.1f} s")
    assert proc.returncode == -9, proc.stdout + proc.stderr
    return proc.stdout


def test_records_survive_workers_killed_mid_batch(pg_url: str) -> None:
    bootstrap = _shared_bootstrap()
    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 6)
        records = signed_records(labels, rounds=3)  # 72 records, 10 per batch
        topic, group = f"signed-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, 2)
        publisher = RecordPublisher(bootstrap, topic)
        publisher.publish([r.to_json_dict() for r in records])  # acknowledged by the broker
        publisher.close()
        # Killed inside the write transaction of its 2nd batch: that batch rolls back.
        assert "in_transaction" in _killed_worker(pg_url, bootstrap, topic, group, "in_transaction")
        # Killed after the 2nd batch committed, before its offsets did: it is replayed.
        out = _killed_worker(pg_url, bootstrap, topic, group, "after_db_commit")
        assert "after_db_commit" in out
        config = SignedStreamConfig(
            bootstrap, topic, group, poll_batch=10, session_timeout_ms=TEST_SESSION_TIMEOUT_MS
        )
        survivor = _run_until_done(service, config, len(records))
        assert survivor.stats.duplicates > 0  # the replayed batch came back
        counts = check_store(pg_url, records)
        assert counts["records"] == len(records)
    finally:
        service.close()


def test_a_broker_restart_loses_nothing_and_stores_nothing_twice(pg_url: str) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = start_tansu(port)
    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 4)
        records = signed_records(labels, rounds=2)  # 32 records
        topic, group = f"signed-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, 2)
        first = records[:16]
        publisher = RecordPublisher(bootstrap, topic, timeout_s=3.0)
        publisher.publish([r.to_json_dict() for r in first])
        config = SignedStreamConfig(
            bootstrap, topic, group, poll_batch=8, session_timeout_ms=TEST_SESSION_TIMEOUT_MS
        )
        _run_until_done(service, config, len(first))
        # The broker dies and comes back empty (Tansu's in-memory log): publishers resend what
        # they cannot prove was consumed, here everything, so the first half arrives twice.
        broker.kill()
        broker.wait(10)
        broker = start_tansu(port)
        create_topic(bootstrap, topic, 2)
        for _attempt in range(3):  # as the landmark submitter does: retry the batch
            try:
                publisher.publish([r.to_json_dict() for r in records])
                break
            except PublishError:
                continue
        publisher.close()
        worker = _run_until_done(service, config, len(records))
        assert worker.stats.duplicates == len(first)
        check_store(pg_url, records)
    finally:
        service.close()
        broker.kill()
        broker.wait(10)


def test_bad_messages_are_counted_and_forged_records_rejected(pg_url: str) -> None:
    bootstrap = _shared_bootstrap()
    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 2)
        good = signed_records(labels, rounds=1)
        forged = good[0].to_json_dict()
        forged["measured_at_unix_ns"] += 1  # a different time than the landmark signed
        forged["session_id"] = uuid.uuid4().hex
        topic, group = f"signed-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, 1)
        publisher = RecordPublisher(bootstrap, topic)
        publisher.publish([r.to_json_dict() for r in good] + [forged])
        publisher.close()
        from confluent_kafka import Producer

        raw = Producer({"bootstrap.servers": bootstrap})
        raw.produce(topic, key=b"x", value=b"not json")
        raw.produce(topic, key=b"x", value=b'{"device_id": "x"}')
        raw.produce(topic, key=b"x", value=b"[" * 100_000)  # RecursionError in json.loads
        # A well-formed record PostgreSQL cannot store as text (NUL in an id it quotes).
        poison = good[1].to_json_dict()
        poison["landmark_id"] = "fra\u0000"
        poison["session_id"] = uuid.uuid4().hex
        raw.produce(topic, key=b"x", value=json.dumps(poison).encode())
        assert raw.flush(10) == 0
        config = SignedStreamConfig(bootstrap, topic, group)
        worker = _run_until_done(service, config, len(good), min_messages=len(good) + 5)
        assert worker.stats.bad_messages == 4
        assert worker.stats.rejected == 1
        check_store(pg_url, good)
        with service.read() as s:
            reasons = s.execute(select(RejectionRow.reason)).scalars().all()
        assert reasons == ["bad_signature"]
        _check_lag_endpoint(pg_url, f"kafka://{bootstrap}/{topic}", group, len(good) + 5)
    finally:
        service.close()


def _check_lag_endpoint(url: str, stream: str, group: str, end: int) -> None:
    """GET /stream, as a dashboard panel reads it: every partition consumed to its end."""
    from fastapi.testclient import TestClient

    from lightfence.verifier.api.app import create_app
    from lightfence.verifier.auth import Role
    from lightfence.verifier.config import VerifierConfig
    from verifier_support import token

    config = VerifierConfig(db_url=url, stream_url=stream, stream_group=group)
    with TestClient(create_app(config, worker=False)) as client:
        assert client.get("/stream").status_code == 401
        secret = token(client.app.state.service, "ops", Role.AUDITOR)  # type: ignore[attr-defined]
        got = client.get("/stream", headers={"authorization": f"Bearer {secret}"}).json()
    assert got["configured"] is True and got["group"] == group
    assert got["lag_total"] == 0 and got["partitions"][0]["committed"] == end


def test_kafka_urls_and_messages() -> None:
    assert parse_kafka_url("kafka://a:1,b:2/records") == ("a:1,b:2", "records")
    for bad in ("kafka://a:1", "kafka:///t", "http://a/records", "kafka://a:1/x/y"):
        with pytest.raises(TopicAddressError):
            parse_kafka_url(bad)
    key, value = encode({"device_id": "d1", "x": 1})
    assert key == b"d1" and value == b'{"device_id":"d1","x":1}'
    with pytest.raises(ValueError):
        encode({"x": 1})
    for junk in (b"", b"[1]", b"\xff", b'{"device_id": "x"}', b"[" * 100_000, b'{"a":' * 50_000):
        with pytest.raises(RecordError):
            parse_message(junk)
    unsigned = {**signed_records(["junk"], rounds=1)[0].to_json_dict(), "landmark_signature": ""}
    with pytest.raises(RecordError, match="landmark_signature"):  # crashed ingest before
        parse_message(json.dumps(unsigned).encode())
    assert len(LANDMARKS) == 4


def test_the_landmark_submitter_publishes_to_kafka(pg_url: str) -> None:
    import asyncio

    from lightfence.landmark.submitter import RecordSubmitter

    bootstrap = _shared_bootstrap()
    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 1)
        records = signed_records(labels, rounds=1)
        topic, group = f"signed-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, 1)

        async def submit() -> None:
            sub = RecordSubmitter(f"kafka://{bootstrap}/{topic}", None, linger_s=0.0)
            stop = asyncio.Event()
            for r in records:
                sub.add(r)
            stop.set()
            await sub.run(stop)
            assert sub.counters.records_submitted == len(records)

        thread = threading.Thread(target=lambda: asyncio.run(submit()))
        thread.start()
        thread.join(30)
        # The worker as deployed: `lightfence stream-worker`, in this process (CliRunner).
        from typer.testing import CliRunner

        from lightfence.cli.app import app

        argv = ["stream-worker", "--bootstrap", bootstrap, "--topic", topic, "--group", group]
        argv += ["--db", pg_url, "--stop-when-idle", "6", "--log-level", "warning"]
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, result.output
        stats = json.loads(result.output.strip().splitlines()[-1])
        assert stats["stored"] == len(records) and stats["verdicts"] == 1
        check_store(pg_url, records)
    finally:
        service.close()


def test_reverification_rechecks_stored_records_into_the_same_history(pg_url: str) -> None:
    from sqlalchemy import text, update

    from lightfence.fleet.reverify import reverify
    from lightfence.verifier.models import AlertRow, VerdictRow

    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 3)
        records = signed_records(labels, rounds=1)
        service.ingest(records, ADMIN)
        service.recompute_all()
        with service.read() as s:
            before = s.execute(select(func.count()).select_from(VerdictRow)).scalar_one()
        report = reverify(service, engine="local")
        assert (report.devices, report.records, report.verdicts) == (3, 12, 3)
        assert report.failed == []
        check_store(pg_url, records, reverified=True)  # one history; the chain verifies
        again = reverify(service, engine="local")
        assert again.verdicts == 3  # a re-verification is a new verdict, once per pass
        # A stored row edited behind the verifier's back: it leaves the verdicts, and its
        # device is decided again on the rest.
        victim = records[0].device_id
        with service.db.write() as s:
            s.execute(
                update(RecordRow)
                .where(RecordRow.record_hash == record_hash(records[0]))
                .values(min_rtt_ns=1)
            )
        edited = reverify(service, engine="local")
        assert [f[1] for f in edited.failed] == [victim]
        assert "columns differ" in edited.failed[0][2]
        assert edited.verdicts == 3
        with service.read() as s:
            newest = queries.latest_verdict(s, victim)
            bad = s.execute(
                select(RecordRow.id).where(RecordRow.record_hash == record_hash(records[0]))
            ).scalar_one()
        assert newest is not None and bad not in [i["record_id"] for i in newest.inputs]
        with service.read() as s:
            after = s.execute(select(func.count()).select_from(VerdictRow)).scalar_one()
            alerts = s.execute(select(AlertRow.device_id, AlertRow.kind)).all()
            assert s.execute(text("select 1")).scalar_one() == 1
        assert after == before + 3 + 3 + 3
        assert (victim, "tampered_evidence") in [tuple(a) for a in alerts]
        # A retired device gets no new verdict from re-verification either (its records are
        # refused on the verifier's own path; the gate refuses its tokens), though its records
        # are still checked.
        retired = records[-1].device_id
        with service.db.write() as s:
            s.execute(update(DeviceRow).where(DeviceRow.id == retired).values(retired_ns=1))
        report = reverify(service, engine="local")
        assert (report.devices, report.records, report.verdicts) == (3, 12, 2)
    finally:
        service.close()


def test_worker_metrics_show_throughput_and_lag() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from lightfence.fleet.stream_metrics import StreamMetrics

    registry = CollectorRegistry()
    metrics = StreamMetrics.on(registry)
    assert StreamMetrics.on(registry) is metrics  # registered once per registry
    metrics.consumed(500, now_s=100.0)
    metrics.consumed(500, now_s=102.0)
    metrics.set_lag({0: 7, 1: 3})
    text = generate_latest(registry).decode()
    assert "lightfence_stream_records_per_second 500.0" in text
    assert 'lightfence_stream_consumer_lag{partition="0"} 7.0' in text
    assert "lightfence_stream_consumer_lag_total 10.0" in text
    metrics.forget(0)
    assert 'partition="0"' not in generate_latest(registry).decode()


def test_two_recomputers_store_one_verdict_per_dirty_seq(tmp_path: Path) -> None:
    """Two recomputers (API replicas, stream workers) that read the same marked device both
    decide it; only the first store lands, the second finds the device no longer marked."""
    from lightfence.verifier import verdicts
    from lightfence.verifier.clock import now_ns

    service = service_for(f"sqlite:///{tmp_path}/v.db")
    try:
        labels = enrol_fleet(service, 1)
        service.ingest(signed_records(labels, rounds=1), ADMIN)
        with service.read() as s:
            pending = verdicts.read_pending(s, service.config)
        first, second = verdicts.decide_pending(pending), verdicts.decide_pending(pending)
        with service.write() as s:
            assert len(verdicts.store_decided(s, first, now_ns())) == 1
        with service.write() as s:
            assert verdicts.store_decided(s, second, now_ns()) == []
    finally:
        service.close()


def test_copy_keeps_every_character_of_what_it_stores(pg_url: str) -> None:
    """COPY's text format gives backslash, tab, newline and CR meanings: each field and the
    JSON body must come back exactly as written."""
    from lightfence.verifier.pgcopy import copy_records

    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 1)
        rec = signed_records(labels, rounds=1)[0]
        odd = "a\\b\tc\nd\re\\\\N"
        row = {
            "record_hash": record_hash(rec),
            "device_id": rec.device_id,
            "landmark_id": "fra1",
            "session_id": rec.session_id.hex(),
            "min_rtt_ns": rec.min_rtt_ns,
            "measured_ns": rec.measured_at_unix_ns,
            "received_ns": 1,
            "submitted_by": odd,
        }
        body = {**rec.to_json_dict(), "note": odd + "é\u0001"}
        with service.db.write() as s:
            (rid,) = copy_records(s, [row], [json.dumps(body, ensure_ascii=False)])
        with service.read() as s:
            got = s.get(RecordRow, rid)
            assert got is not None
            assert got.submitted_by == odd and got.body == body
    finally:
        service.close()


def test_one_of_matches_exactly_the_values_given(pg_url: str) -> None:
    """`one_of` sends text values as one array literal it quotes itself: a value with quotes,
    backslashes, braces, commas or the word NULL must match itself and nothing else, and a value
    longer than the column must not be cut to one that names another row."""
    from lightfence.verifier.sqlin import one_of

    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 1)
        with service.read() as s:
            (real,) = s.execute(select(DeviceRow.id)).scalars().all()
        odd = ['a"b', "a\\b", "{x}", "p,q", "NULL", "", " sp ", 'x\\"}', "é", real + "ff"]
        with service.read() as s:
            none = s.execute(select(DeviceRow.id).where(one_of(DeviceRow.id, odd))).all()
            assert none == []
            one = s.execute(select(DeviceRow.id).where(one_of(DeviceRow.id, [*odd, real])))
            assert one.scalars().all() == [real]
        assert labels
    finally:
        service.close()


@given(
    st.lists(
        st.tuples(st.text(max_size=12), st.text(max_size=12), st.text(max_size=40)),
        min_size=1,
        max_size=4,
    )
)
def test_copy_text_escapes_exactly_as_row_by_row(fields: list[tuple[str, str, str]]) -> None:
    # copy_text skips escaping when the whole text shows nothing to escape; it must never differ
    # from escaping every row.
    from lightfence.verifier.pgcopy import _escaped_line, copy_text

    rows = [
        {
            "record_hash": "ab" * 32,
            "device_id": "cd" * 16,
            "landmark_id": landmark,
            "session_id": "ef" * 16,
            "min_rtt_ns": 1,
            "measured_ns": 2,
            "received_ns": 3,
            "submitted_by": by,
        }
        for landmark, by, _ in fields
    ]
    bodies = [body for *_, body in fields]
    assert copy_text(rows, bodies) == "".join(map(_escaped_line, rows, bodies))


def test_a_worker_builds_its_devices_policy_regions_before_it_consumes(tmp_path: Path) -> None:
    # The first verdict under a policy would otherwise build its region inside a verdict pass.
    from sqlalchemy import update

    from lightfence.fleet.signed_stream import preload_policies

    service = service_for(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        enrol_fleet(service, 2)
        with service.write() as s:
            first = s.execute(select(DeviceRow.id).limit(1)).scalar_one()
            s.execute(  # a stored text that no longer parses
                update(DeviceRow).where(DeviceRow.id == first).values(policy="in:XX-nowhere")
            )
        assert preload_policies(service) == ["in:DE"]  # the broken one logged and skipped
    finally:
        service.close()


def test_recomputers_on_two_stream_chains_store_one_verdict(pg_url: str) -> None:
    """Stream chains let two verdict passes run at once; the device row lock (FOR UPDATE in
    store_decided) makes the second wait for the first, then find the device decided."""
    from lightfence.verifier import verdicts
    from lightfence.verifier.clock import now_ns

    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 1)
        chains = service.open_chains(["kafka:t:0", "kafka:t:1"], "test")
        service.ingest(signed_records(labels, rounds=1), ADMIN, chains=[chains["kafka:t:0"]])
        with service.read() as s:
            pending = verdicts.read_pending(s, service.config)
        first, second = verdicts.decide_pending(pending), verdicts.decide_pending(pending)
        stored_first, release = threading.Event(), threading.Event()
        second_result: list[int] = []

        def first_pass() -> None:
            with service.write(chains=[chains["kafka:t:0"]]) as s:
                assert len(verdicts.store_decided(s, first, now_ns())) == 1
                stored_first.set()
                release.wait(10)

        def second_pass() -> None:
            with service.write(chains=[chains["kafka:t:1"]]) as s:
                second_result.append(len(verdicts.store_decided(s, second, now_ns())))

        a = threading.Thread(target=first_pass)
        a.start()
        assert stored_first.wait(10)
        b = threading.Thread(target=second_pass)
        b.start()
        b.join(0.5)
        assert b.is_alive(), "the second pass did not wait for the first's device lock"
        release.set()
        a.join(10)
        b.join(10)
        assert second_result == [0]
        with service.read() as s:
            assert s.execute(select(func.count()).select_from(VerdictRow)).scalar_one() == 1
            report = audit_verify.verify_chain(s)
        assert report.ok and report.chains == 3, report
    finally:
        service.close()


def test_two_workers_at_once_write_their_partitions_chains(pg_url: str) -> None:
    """Two consumer-group members in one process, four partitions: every record stored once,
    every verdict once, and the audit log verifies with a stream chain per partition."""
    bootstrap = _shared_bootstrap()
    service = service_for(pg_url)
    try:
        labels = enrol_fleet(service, 8)
        records = signed_records(labels, rounds=2)
        topic, group = f"signed-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, 4)
        publisher = RecordPublisher(bootstrap, topic)
        publisher.publish([r.to_json_dict() for r in records])
        publisher.close()
        config = SignedStreamConfig(
            bootstrap, topic, group, poll_batch=7, session_timeout_ms=TEST_SESSION_TIMEOUT_MS
        )
        finished = threading.Event()
        workers = [SignedStreamWorker(service, config) for _ in range(2)]
        threads = [
            threading.Thread(target=w.run, args=(finished.is_set,), daemon=True) for w in workers
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 40
        while not _done(service, len(records)):
            assert time.monotonic() < deadline, "the stream did not finish in time"
            time.sleep(0.1)
        finished.set()
        for t in threads:
            t.join(20)
        assert sum(w.stats.stored for w in workers) == len(records)
        counts = check_store(pg_url, records)
        with service.read() as s:
            report = audit_verify.verify_chain(s)
        # The main chain and one per partition that had records (8 devices may leave one empty).
        used = {c for w in workers for c in w.chains.values()}
        assert report.chains == 1 + len(used) >= 3, report
        assert counts["records"] == len(records)
    finally:
        service.close()


def test_a_record_refused_once_by_a_unique_key_is_tried_again() -> None:
    """Writers on two partitions may store the same landmark session at once (a replay keyed
    to another device): the loser's IntegrityError sends its batch one by one, and the record
    refused once is tried again, so it comes back a duplicate or a kept rejection."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry
    from sqlalchemy.exc import DataError, IntegrityError

    from lightfence.fleet.signed_stream import SignedWorkerStats
    from lightfence.fleet.stream_metrics import StreamMetrics
    from lightfence.verifier.ingest import Outcome

    calls: list[str] = []  # no broker and no database: the worker's retry rule alone

    def ingest(records: list[SimpleNamespace], _chains: list[int]) -> list[Outcome]:
        name = str(records[0].device_id)
        calls.append(name)
        if name == "raced" and calls.count("raced") == 1:
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        if name == "bad":
            raise IntegrityError("INSERT", {}, Exception("always"))
        if name == "unstorable":
            raise DataError("INSERT", {}, Exception("NUL in text"))
        return [Outcome("duplicate", "h")]

    worker = SignedStreamWorker.__new__(SignedStreamWorker)
    worker.stats = SignedWorkerStats()
    worker.metrics = StreamMetrics.on(CollectorRegistry())
    worker._ingest = ingest  # type: ignore[method-assign,assignment]
    records = [SimpleNamespace(device_id=n) for n in ("ok", "raced", "bad", "unstorable")]
    kept, outcomes = worker._ingest_singly(records, [2])  # type: ignore[arg-type]
    assert [r.device_id for r in kept] == ["ok", "raced"] and len(outcomes) == 2
    assert worker.stats.bad_messages == 2  # each refused record counted once
    assert calls == ["ok", "raced", "raced", "bad", "bad", "unstorable"]


def test_a_transaction_aborted_as_deadlocked_is_run_again() -> None:
    from sqlalchemy.exc import OperationalError

    from lightfence.verifier.db import ROLLED_BACK_RETRIES, again_if_rolled_back

    class Aborted(Exception):
        sqlstate = "40P01"

    tries: list[int] = []

    def work() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise OperationalError("UPDATE", {}, Aborted())
        return "done"

    assert again_if_rolled_back(work) == "done" and len(tries) == 3

    def always() -> str:
        tries.append(1)
        raise OperationalError("UPDATE", {}, Aborted())

    tries.clear()
    with pytest.raises(OperationalError):
        again_if_rolled_back(always)
    assert len(tries) == ROLLED_BACK_RETRIES

    def other() -> str:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    with pytest.raises(OperationalError):
        again_if_rolled_back(other)
