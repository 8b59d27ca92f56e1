"""Shared pieces for the verifier tests: databases (SQLite and real PostgreSQL), a small fleet
with real keys at real places, and signed records made on demand. No mocks."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import DeviceIdentity, software_identity
from lightfence.model.trust import TrustLevel
from lightfence.protocol.record import MeasurementRecord
from lightfence.verifier.auth import Principal, Role, create_token
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.registry import LandmarkSpec, Licence, enrol_device, put_landmark
from lightfence.verifier.service import Service
from record_factory import make_signed_record, seeded_key

PG_ENV = "LIGHTFENCE_TEST_PG_URL"

LANDMARKS = {
    # id: (lat, lon) — real cities, so the core decides on real borders.
    "fra1": (50.11, 8.68),
    "par1": (48.86, 2.35),
    "ams1": (52.37, 4.90),
    "waw1": (52.23, 21.01),
}
ADMIN = Principal(name="test-admin", role=Role.ADMIN)


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new schema in the real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/verifier.db"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(
            f"!!! {PG_ENV} is not set: the PostgreSQL variant of the storage tests did NOT run. "
            f"Start one with `scripts/start-postgres.sh` and export {PG_ENV}=<the URL it prints>."
        )
    with scratch_schema(base, "t_") as url:
        yield url


@contextmanager
def scratch_schema(base: str, prefix: str) -> Iterator[str]:
    """A fresh schema (`prefix` + random) in the PostgreSQL at `base`, dropped afterwards: the
    URL whose connections use it."""
    schema = prefix + uuid.uuid4().hex[:12]
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(base, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@dataclass
class Fleet:
    service: Service
    landmark_keys: dict[str, SigningKey] = field(default_factory=dict)
    device_key: SigningKey = field(default_factory=lambda: seeded_key("device-0"))
    operator: str = "acme"
    _session: int = 0

    @property
    def identity(self) -> DeviceIdentity:
        return identity_for(self.device_key)

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    def record(
        self,
        landmark: str,
        rtt_ms: float,
        *,
        device_key: SigningKey | None = None,
        identity: DeviceIdentity | None = None,
        measured_at_ns: int | None = None,
        session_id: bytes | None = None,
    ) -> MeasurementRecord:
        self._session += 1
        key = device_key or self.device_key
        return make_signed_record(
            self.landmark_keys[landmark],
            key,
            landmark_id=landmark,
            rtts_ns=(int(rtt_ms * 1e6) + 7_000, int(rtt_ms * 1e6)),
            identity=identity or identity_for(key),
            session_id=session_id or uuid.uuid4().bytes,
            measured_at_unix_ns=measured_at_ns or time.time_ns(),
        )


def identity_for(key: SigningKey) -> DeviceIdentity:
    ident = software_identity(key)
    return DeviceIdentity(
        provider="nvml",
        trust_level=TrustLevel.GPU_BOUND,
        public_key=ident.public_key,
        attributes={
            "gpu_uuid": "GPU-" + key.key_id[:8],
            "gpu_serial": "1650",
            "gpu_architecture": "9",
        },
    )


def make_fleet(
    url: str, *, policy: str = "in:DE", declared: str | None = "DE", **config: object
) -> Fleet:
    service = Service(VerifierConfig(db_url=url, **config))  # type: ignore[arg-type]
    fleet = Fleet(service)
    with service.write() as s:
        for lid, (lat, lon) in LANDMARKS.items():
            key = seeded_key("landmark-" + lid)
            fleet.landmark_keys[lid] = key
            put_landmark(
                s, LandmarkSpec(lid, lat, lon, key.public_bytes.hex(), "lf-net"), ADMIN, now_ns()
            )
        enrol_device(
            s,
            fleet.identity,
            Licence(policy=policy, declared_country=declared),
            fleet.operator,
            ADMIN,
            now_ns(),
        )
    return fleet


def token(service: Service, name: str, role: Role, owner: str | None = None) -> str:
    with service.write() as s:
        return create_token(s, name=name, role=role, owner=owner, actor="test", now_ns=now_ns())


def audit_problems(fleet: Fleet, checkpoints: Path | None = None) -> list[str]:
    """What `audit verify` reports for the fleet's database, with a checkpoint file's."""
    from lightfence.verifier import audit_verify, checkpoint

    with fleet.service.read() as s:
        found = audit_verify.verify_chain(s).problems
        if checkpoints is not None:
            found += checkpoint.check(s, checkpoint.read_file(checkpoints)).problems
    return found


def run_sql(url: str, *statements: str) -> None:
    """Statements run straight on the database, as an attacker with its password would."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(text(stmt))
    engine.dispose()
