"""The verifier as a real process on loopback: killed mid-ingestion, and under 200+ concurrent
submissions. Runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

import lightfence
from lightfence.verifier import audit_verify
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import RecordRow
from lightfence.verifier.service import Service
from verifier_support import Fleet, db_url, make_fleet, token

__all__ = ["db_url"]
pytestmark = pytest.mark.slow  # each test starts the verifier process (numpy, shapely, borders)

SRC_DIR = str(Path(lightfence.__file__).resolve().parent.parent)
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def verifier_process(url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    path = os.pathsep.join([SRC_DIR, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    key = os.path.join(tempfile.gettempdir(), f"lightfence-test-verifier-{port}.key")
    checkpoints = os.path.join(tempfile.gettempdir(), f"lightfence-test-checkpoints-{port}.jsonl")
    cmd = [sys.executable, "-c", "from lightfence.cli import main; main()", "serve",
           "--db", url, "--port", str(port), "--log-level", "warning",
           "--signing-key", key, "--checkpoints", checkpoints]  # fmt: skip
    log = tempfile.TemporaryFile()  # noqa: SIM115  (a file, not a pipe: never blocks the server)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise AssertionError(f"verifier exited with {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("verifier did not start")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _stored_hashes(url: str) -> set[str]:
    service = Service(VerifierConfig(url))
    try:
        with service.read() as s:
            return set(s.execute(select(RecordRow.record_hash)).scalars())
    finally:
        service.close()


def _records(fleet: Fleet, n: int) -> list[dict[str, object]]:
    places = [("fra1", 0.5), ("par1", 5.0), ("ams1", 3.5)]
    return [fleet.record(*places[i % 3]).to_json_dict() for i in range(n)]


def test_sigkill_mid_ingestion_loses_no_acknowledged_record(db_url: str) -> None:
    from lightfence.protocol.record import MeasurementRecord
    from lightfence.verifier.ingest import record_hash

    fleet = make_fleet(db_url)
    secret = token(fleet.service, "admin", Role.ADMIN)
    fleet.service.close()
    records = _records(fleet, 150)
    hashes = [record_hash(MeasurementRecord.from_json_dict(r)) for r in records]
    port = _free_port()
    acked: set[str] = set()
    lock = threading.Lock()
    headers = {"authorization": f"Bearer {secret}"}

    def submit(chunk: list[int]) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            for i in chunk:
                try:
                    r = client.post("/records", json=records[i], timeout=10)
                except httpx.HTTPError:
                    return  # the verifier died: what was not acknowledged may be lost
                if r.status_code in (200, 201):
                    with lock:
                        acked.add(hashes[i])

    with verifier_process(db_url, port) as proc:
        chunks = [list(range(k, len(records), 6)) for k in range(6)]
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(submit, c) for c in chunks]
            while len(acked) < 30 and not all(f.done() for f in futures):
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)  # mid-ingestion, no chance to clean up
            proc.wait()
            for f in futures:
                f.result()
    assert 30 <= len(acked) < len(records), "the kill should land mid-ingestion"
    stored = _stored_hashes(db_url)
    assert acked <= stored, f"{len(acked - stored)} acknowledged records were lost"

    # Resume: the same verifier starts on the same database, takes the rest, decides.
    base = f"http://127.0.0.1:{port}"
    with verifier_process(db_url, port), httpx.Client(base_url=base, headers=headers) as client:
        for k in range(0, len(records), 50):
            r = client.post("/records", json={"records": records[k : k + 50]}, timeout=60)
            assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
        deadline = time.monotonic() + 60
        while client.get("/status").json()["pending_verdicts"] and time.monotonic() < deadline:
            time.sleep(0.2)
        status = client.get("/status").json()
        assert status["pending_verdicts"] == 0 and status["records"] == len(records)
        assert client.get("/audit/verify").json()["ok"]
    assert _stored_hashes(db_url) == set(hashes)


def test_concurrent_submissions_are_stored_exactly_once(db_url: str) -> None:
    fleet = make_fleet(db_url)
    secret = token(fleet.service, "lm", Role.ADMIN)
    fleet.service.close()
    records = _records(fleet, 200)
    bodies = records + records[:40]  # 240 requests at once, 40 of them racing duplicates
    port = _free_port()

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"authorization": f"Bearer {secret}"},
            limits=limits,
            timeout=120,
        ) as client:
            return await asyncio.gather(*(client.post("/records", json=b) for b in bodies))

    with verifier_process(db_url, port):
        responses = asyncio.run(fire())
        assert all(r.status_code in (200, 201) for r in responses), [
            r.text for r in responses if r.status_code not in (200, 201)
        ][:3]
        stored: dict[str, int] = {}
        for r in responses:
            if r.json()["status"] == "stored":
                stored[r.json()["record_hash"]] = stored.get(r.json()["record_hash"], 0) + 1
        assert len(stored) == len(records) and set(stored.values()) == {1}
    assert len(_stored_hashes(db_url)) == len(records)
    check = Service(VerifierConfig(db_url))
    with check.read() as s:
        assert audit_verify.verify_chain(s).ok
    check.close()
