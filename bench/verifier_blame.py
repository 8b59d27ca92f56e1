"""Verifier recompute with a lying landmark: devices/s when every device is INCONSISTENT (the
landmarks named per device, then the landmark scoring pass) against the same fleet honest.

`python -m bench.verifier_blame [--devices N]` (SQLite). Automatic
flagging is off (threshold 0) so every pass pays for naming and scoring.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import uuid

from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import software_identity
from lightfence.protocol.challenge import challenge_signing_bytes
from lightfence.protocol.record import MeasurementRecord, TimestampSource
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.registry import LandmarkSpec, Licence, enrol_device, put_landmark
from lightfence.verifier.service import Service

LANDMARKS = {"fra1": (50.11, 8.68), "par1": (48.86, 2.35), "ams1": (52.37, 4.90),
             "waw1": (52.23, 21.01)}  # fmt: skip
HONEST_MS = {"fra1": 0.5, "par1": 6.0, "ams1": 5.0, "waw1": 9.0}
LIE_MS = 0.5
"""Warsaw's RTT when it lies: as if the Frankfurt devices were beside it."""
ADMIN = Principal("bench", Role.ADMIN)


def _records(keys: dict[str, SigningKey], devices: list[SigningKey], lie: bool) -> list[object]:
    out: list[object] = []
    for key in devices:
        ident = software_identity(key)
        for lid, ms in HONEST_MS.items():
            rtt_ns = int((LIE_MS if lie and lid == "waw1" else ms) * 1e6)
            session, nonce = uuid.uuid4().bytes, os.urandom(32)
            sig = key.sign(challenge_signing_bytes(nonce, lid, ident.device_id, session, 0))
            out.append(
                MeasurementRecord(
                    landmark_id=lid,
                    landmark_key_id=keys[lid].key_id,
                    device_id=ident.device_id,
                    device_key_id=key.key_id,
                    trust_level=ident.trust_level,
                    session_id=session,
                    rounds_sent=1,
                    rtts_ns=(rtt_ns,),
                    fastest_round=0,
                    fastest_nonce=nonce,
                    device_signature=sig,
                    timestamp_source=TimestampSource.KERNEL,
                    measured_at_unix_ns=time.time_ns(),
                ).signed_by(keys[lid])
            )
    return out


def run(url: str, n_devices: int, lie: bool) -> float:
    """Devices per second through recompute_all (read, decide, name, store, score)."""
    service = Service(VerifierConfig(db_url=url, implicated_flag_min_devices=0))
    keys = {lid: SigningKey.generate() for lid in LANDMARKS}
    devices = [SigningKey.generate() for _ in range(n_devices)]
    with service.write() as s:
        for lid, (lat, lon) in LANDMARKS.items():
            spec = LandmarkSpec(lid, lat, lon, keys[lid].public_bytes.hex(), "bench")
            put_landmark(s, spec, ADMIN, now_ns())
        for key in devices:
            enrol_device(s, software_identity(key), Licence("in:DE", declared_country="DE"),
                         "bench-ops", ADMIN, now_ns())  # fmt: skip
    records = _records(keys, devices, lie)
    for k in range(0, len(records), 500):
        service.ingest(records[k : k + 500], ADMIN)  # type: ignore[arg-type]
    started = time.perf_counter()
    n = service.recompute_all()
    rate = n / (time.perf_counter() - started)
    service.close()
    assert n == n_devices, n
    return rate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    args = ap.parse_args(argv)
    logging.getLogger("lightfence.verifier").setLevel(logging.ERROR)  # one alert per device
    print(f"verifier recompute with a lying landmark: {args.devices} devices, 4 landmarks each")
    with tempfile.TemporaryDirectory() as tmp:
        honest = run(f"sqlite:///{tmp}/honest.db", args.devices, lie=False)
        lying = run(f"sqlite:///{tmp}/lying.db", args.devices, lie=True)
    print(f"  sqlite: honest fleet              {honest:10.0f} devices/s")
    print(f"  sqlite: every device INCONSISTENT {lying:10.0f} devices/s"
          f"  ({lying / honest:.2f}x honest)")  # fmt: skip


if __name__ == "__main__":
    main()
