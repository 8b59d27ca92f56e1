"""Verifier throughput: records ingested per second (signature checks on) and verdicts recomputed
per second, on SQLite and (when a URL is given) PostgreSQL.

Baselines measured in the same run: the signature checks alone (the floor any ingestion pays),
and the core's `decide_batch` alone on the same devices (the floor any recompute pays).

    python -m bench.verifier_ingest [--records 9000] [--devices 1000] [--pg URL]

The PostgreSQL URL defaults to $LIGHTFENCE_BENCH_PG_URL or $LIGHTFENCE_TEST_PG_URL; a scratch
schema is created there and dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
from sqlalchemy import create_engine, text

from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import software_identity
from lightfence.protocol.challenge import challenge_signing_bytes
from lightfence.protocol.record import MeasurementRecord, TimestampSource, verify
from lightfence.verifier import verdicts
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Principal, Role, create_token
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.registry import LandmarkSpec, Licence, enrol_device, put_landmark
from lightfence.verifier.service import Service

LANDMARKS = {"fra1": (50.11, 8.68), "par1": (48.86, 2.35), "ams1": (52.37, 4.90)}
RTT_MS = {"fra1": 0.6, "par1": 5.1, "ams1": 3.6}
BATCH = 500
CONCURRENT_SUBMITTERS = 4
"""Landmarks submitting at the same time in the second HTTP phase."""
ADMIN = Principal("bench", Role.ADMIN)


class Fixture:
    """Keys, identities and signed records, made once and ingested into each database."""

    def __init__(self, n_records: int, n_devices: int) -> None:
        self.landmark_keys = {lid: SigningKey.generate() for lid in LANDMARKS}
        self.device_keys = [SigningKey.generate() for _ in range(n_devices)]
        self.identities = [software_identity(k) for k in self.device_keys]
        self.records = [self._record(i) for i in range(n_records)]

    def _record(self, i: int) -> MeasurementRecord:
        lid = list(LANDMARKS)[i % len(LANDMARKS)]
        d = (i // len(LANDMARKS)) % len(self.device_keys)
        key, ident = self.device_keys[d], self.identities[d]
        session = uuid.uuid4().bytes
        nonce = os.urandom(32)
        rtt_ns = int(RTT_MS[lid] * 1e6)
        sig = key.sign(challenge_signing_bytes(nonce, lid, ident.device_id, session, 1))
        return MeasurementRecord(
            landmark_id=lid,
            landmark_key_id=self.landmark_keys[lid].key_id,
            device_id=ident.device_id,
            device_key_id=key.key_id,
            trust_level=ident.trust_level,
            session_id=session,
            rounds_sent=3,
            rtts_ns=(rtt_ns + 40_000, rtt_ns, rtt_ns + 9_000),
            fastest_round=1,
            fastest_nonce=nonce,
            device_signature=sig,
            timestamp_source=TimestampSource.KERNEL,
            measured_at_unix_ns=time.time_ns(),
        ).signed_by(self.landmark_keys[lid])

    def populate(self, service: Service) -> str:
        with service.write() as s:
            for lid, (lat, lon) in LANDMARKS.items():
                pub = self.landmark_keys[lid].public_bytes.hex()
                put_landmark(s, LandmarkSpec(lid, lat, lon, pub, "bench"), ADMIN, now_ns())
            lic = Licence("outside:CN,HK,MO", declared_country="DE")
            for ident in self.identities:
                enrol_device(s, ident, lic, "bench-ops", ADMIN, now_ns())
            return create_token(
                s, name="bench", role=Role.ADMIN, owner=None, actor="bench", now_ns=now_ns()
            )


def _rate(n: int, fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def signature_baseline(fx: Fixture) -> float:
    """The checks ingestion makes per record, alone: `protocol.record.verify`."""
    keys = {lid: k.public_bytes for lid, k in fx.landmark_keys.items()}
    dev = {i.device_id: i.public_key for i in fx.identities}

    sample = fx.records[:2000]

    def run() -> None:
        for r in sample:
            verify(r, keys[r.landmark_id], dev[r.device_id])

    return _rate(len(sample), run)


@contextmanager
def _pg_schema(base: str) -> Iterator[str]:
    schema = "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _serve(config: VerifierConfig, conn: Connection) -> None:
    app = create_app(config, worker=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    conn.send(server.servers[0].sockets[0].getsockname()[1])
    conn.recv()  # any message: stop
    server.should_exit = True
    thread.join(timeout=10)


@contextmanager
def _http_server(config: VerifierConfig) -> Iterator[str]:
    """`lightfence serve`'s app in its own process, as deployed: submitters do not share its GIL."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(config, child), daemon=True)
    proc.start()
    port = parent.recv()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        parent.send("stop")
        proc.join(timeout=15)


def _submit_all(base: str, secret: str, bodies: list[dict[str, Any]], submitters: int) -> None:
    """POST every body, `submitters` at a time (each like one landmark, with its own client)."""
    headers = {"authorization": f"Bearer {secret}"}
    queue = list(reversed(bodies))
    lock = threading.Lock()

    def submitter() -> None:
        with httpx.Client(base_url=base, timeout=120, headers=headers) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = client.post("/records", json=body)
                assert r.status_code == 200 and r.json()["stored"] == len(body["records"]), r.text

    threads = [threading.Thread(target=submitter) for _ in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_database(label: str, url: str, fx: Fixture) -> dict[str, float]:
    third = len(fx.records) // 3
    direct = fx.records[:third]
    http_one, http_many = fx.records[third : 2 * third], fx.records[2 * third :]
    config = VerifierConfig(
        db_url=url,
        max_batch_records=BATCH,
        max_body_bytes=2_000_000,
        records_per_s=0,  # measure ingestion, not the per-token budgets (any --records)
        write_requests_per_s=0,
    )
    service = Service(config)
    secret = fx.populate(service)

    def ingest_direct() -> None:
        for k in range(0, len(direct), BATCH):
            outcomes = service.ingest(direct[k : k + BATCH], ADMIN)
            assert all(o.status == "stored" for o in outcomes), outcomes[0]

    # The baseline right before each measurement: a shared machine's load changes over a run.
    sig_before_store = signature_baseline(fx)
    store_rate = _rate(len(direct), ingest_direct)

    def bodies(records: list[MeasurementRecord]) -> list[dict[str, Any]]:
        return [
            {"records": [r.to_json_dict() for r in records[k : k + BATCH]]}
            for k in range(0, len(records), BATCH)
        ]

    one, many = bodies(http_one), bodies(http_many)
    with _http_server(config) as base:
        sig_before_http = signature_baseline(fx)
        http_rate = _rate(len(http_one), lambda: _submit_all(base, secret, one, 1))
        sig_before_many = signature_baseline(fx)
        many_rate = _rate(
            len(http_many), lambda: _submit_all(base, secret, many, CONCURRENT_SUBMITTERS)
        )
    with service.read() as s:
        pending = verdicts.read_pending(s, config, limit=len(fx.identities))
    core_rate = _rate(len(pending), lambda: verdicts.decide_pending(pending))
    n = len(fx.identities)
    recompute_rate = _rate(n, service.recompute_all)
    service.close()
    return {
        "sig_store": sig_before_store,
        "sig_http": sig_before_http,
        "store": store_rate,
        "http": http_rate,
        "sig_many": sig_before_many,
        "http_many": many_rate,
        "recompute": recompute_rate,
        "core": core_rate,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=9000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument(
        "--pg",
        default=os.environ.get("LIGHTFENCE_BENCH_PG_URL")
        or os.environ.get("LIGHTFENCE_TEST_PG_URL"),
    )
    args = ap.parse_args(argv)
    n, d = args.records, args.devices
    print(f"verifier ingest: {n} signed records, {d} devices, batches of {BATCH}")
    fx = Fixture(args.records, args.devices)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run_database("sqlite", f"sqlite:///{tmp}/bench.db", fx)
    if args.pg:
        with _pg_schema(args.pg) as url:
            results["postgresql"] = run_database("postgresql", url, fx)
    else:
        print("  (PostgreSQL skipped: pass --pg URL or set LIGHTFENCE_BENCH_PG_URL)")
    for label, r in results.items():
        core, recompute = r["core"], r["recompute"]
        print(f"  {label}: ingest in-process (Service.ingest) {r['store']:10.0f} records/s"
              f"  ({r['store'] / r['sig_store']:.2f}x signature checks alone:"
              f" {r['sig_store']:.0f}/s)")  # fmt: skip
        print(f"  {label}: ingest over HTTP (POST /records)   {r['http']:10.0f} records/s"
              f"  ({r['http'] / r['sig_http']:.2f}x signature checks alone:"
              f" {r['sig_http']:.0f}/s)")  # fmt: skip
        print(f"  {label}: over HTTP, {CONCURRENT_SUBMITTERS} submitters at once   "
              f"{r['http_many']:10.0f} records/s"
              f"  ({r['http_many'] / r['sig_many']:.2f}x signature checks alone:"
              f" {r['sig_many']:.0f}/s)")  # fmt: skip
        print(f"  {label}: verdict recompute (DB + core)      {recompute:10.0f} devices/s"
              f"  ({recompute / core:.2f}x core decide_batch alone: {core:.0f}/s)")  # fmt: skip
    target = 2000.0
    for key, how in (("http", "one submitter"), ("http_many", "submitters at once")):
        ok = results["sqlite"][key] >= target
        verdict = "met" if ok else "NOT met"
        print(f"  target >= {target:.0f} records/s on SQLite over HTTP, {how}: {verdict}")


if __name__ == "__main__":
    main()
