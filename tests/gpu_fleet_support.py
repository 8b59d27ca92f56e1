"""A device enrolled with a stand-in GPU (the one mock: no GPU here) under a test root, and a
verifier configured with that root and a signed S_floor calibration for it: what the GPU-round
tests share."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from sqlalchemy import select

from lightfence.attestation import AppraisalPolicy
from lightfence.crypto.keys import SigningKey
from lightfence.evidence.calibration import sign_calibration
from lightfence.sim.gpu import STANDIN_HWMODEL, GpuStandIn, GpuTestRoot, SigningTime
from lightfence.sim.gpu import emulate_gpu_round as emulate
from lightfence.verifier.gpu_ingest import GpuRound
from lightfence.verifier.models import VerdictRow
from lightfence.verifier.registry import Licence, set_licence
from record_factory import seeded_key
from verifier_support import ADMIN, Fleet, make_fleet

ROOT = GpuTestRoot.create()
FAST = SigningTime(floor_ms=5.0, median_extra_ms=0.01, sigma=0.1)
GPU = GpuStandIn(ROOT, signing_time=FAST)


def gpu_id_of(gpu: GpuStandIn) -> str:
    fleet = Fleet.__new__(Fleet)
    rec, _ = gpu_round(
        fleet, "fra1", 0.5, gpu=gpu, key=seeded_key("landmark-fra1"), device_id="0" * 32
    )
    return rec.gpu_id


def gpu_round(
    fleet: Fleet,
    landmark: str,
    path_rtt_ms: float,
    *,
    gpu: GpuStandIn = GPU,
    key: SigningKey | None = None,
    device_id: str | None = None,
    at_ns: int | None = None,
    session_id: bytes | None = None,
    policy_root: GpuTestRoot = ROOT,
    rng: random.Random | None = None,
) -> GpuRound:
    r = emulate(
        landmark_id=landmark,
        landmark_key=key or fleet.landmark_keys[landmark],
        device_id=device_id or fleet.device_id,
        gpu=gpu,
        path_rtt_ms=path_rtt_ms,
        policy=AppraisalPolicy((policy_root.cert,)),
        rng=rng or random.Random(),
        utc_ns=at_ns or time.time_ns(),
        session_id=session_id,
    )
    assert r.record is not None, r.appraisal.reason
    return r.record, r.evidence


def write_calibration(path: Path, floor_ms: float = FAST.floor_ms) -> str:
    """A calibration giving the stand-in GPU `floor_ms`, signed by a fresh key, written to
    `path`: the signer's public key (hex)."""
    signer = SigningKey.generate()
    doc = sign_calibration(
        [
            {
                "hwmodel": STANDIN_HWMODEL,
                "vbios_version": GPU.vbios_version,
                "s_floor_ns": round(floor_ms * 1e6),
            }
        ],
        signer,
    )
    path.write_text(json.dumps(doc))
    return signer.public_bytes.hex()


def gpu_fleet(url: str, tmp: Path, *, require: str = "key", enrol_gpu: bool = True) -> Fleet:
    (tmp / "root.pem").write_bytes(ROOT.pem())
    signer = write_calibration(tmp / "calibration.json")
    fleet = make_fleet(
        url,
        gpu_root_file=str(tmp / "root.pem"),
        gpu_calibration_file=str(tmp / "calibration.json"),
        gpu_calibration_keys=(signer,),
    )
    with fleet.service.write() as s:
        lic = Licence(
            policy="in:DE",
            declared_country="DE",
            gpu_id=gpu_id_of(GPU) if enrol_gpu else None,
            require_locates=require,
        )
        set_licence(s, fleet.device_id, lic, ADMIN, time.time_ns())
    return fleet


def latest_verdict(fleet: Fleet) -> VerdictRow:
    """The device's newest stored verdict, detached from its session."""
    with fleet.service.read() as s:
        row = s.execute(
            select(VerdictRow)
            .where(VerdictRow.device_id == fleet.device_id)
            .order_by(VerdictRow.id.desc())
            .limit(1)
        ).scalar_one()
        s.expunge(row)
        return row
