"""What GPU-signed rounds cost the verifier service, each against the key path in the same run
(SQLite in a temporary directory, one process):

1. ingestion: GPU rounds (landmark signature, fresh appraisal under the configured root with the
   chain cache, enrolled GPU, replay) vs key records (two Ed25519 checks), per item;
2. recompute: devices with one key record and one GPU round each (key verdict, GPU verdict,
   mismatch test through `verifier.gpu_verdicts`) vs the same devices with key records only
   (the batch engine alone), per device.

    python -m bench.verifier_gpu [--devices 300]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from bench.verifier_ingest import ADMIN, Fixture
from lightfence.attestation import AppraisalPolicy
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot, SigningTime, emulate_gpu_round
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.gpu_ingest import GpuRound
from lightfence.verifier.registry import Licence, set_licence
from lightfence.verifier.service import Service


def _rounds(fx: Fixture, gpu: GpuStandIn, root: GpuTestRoot) -> list[GpuRound]:
    rng, policy, out = random.Random(16), AppraisalPolicy((root.cert,)), []
    for ident in fx.identities:
        r = emulate_gpu_round(
            landmark_id="fra1",
            landmark_key=fx.landmark_keys["fra1"],
            device_id=ident.device_id,
            gpu=gpu,
            path_rtt_ms=0.6,
            policy=policy,
            rng=rng,
            utc_ns=time.time_ns(),
        )
        assert r.record is not None, r.appraisal.reason
        out.append((r.record, r.evidence))
    return out


def _service(tmp: Path, name: str, fx: Fixture, root_file: Path, gpu_id: str) -> Service:
    service = Service(
        VerifierConfig(db_url=f"sqlite:///{tmp / name}", gpu_root_file=str(root_file))
    )
    fx.populate(service)
    with service.write() as s:
        lic = Licence("outside:CN,HK,MO", declared_country="DE", gpu_id=gpu_id)
        for ident in fx.identities:
            set_licence(s, ident.device_id, lic, ADMIN, time.time_ns())
    return service


def _timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=300)
    n = ap.parse_args(argv).devices
    fx = Fixture(n_records=n, n_devices=n)  # one key record per device (all from fra1 and co.)
    root = GpuTestRoot.create()
    gpu = GpuStandIn(root, signing_time=SigningTime(floor_ms=5.0, median_extra_ms=0.5))
    rounds = _rounds(fx, gpu, root)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "root.pem").write_bytes(root.pem())
        key_only = _service(tmp, "key.db", fx, tmp / "root.pem", rounds[0][0].gpu_id)
        with_gpu = _service(tmp, "gpu.db", fx, tmp / "root.pem", rounds[0][0].gpu_id)
        try:
            t_key = _timed(lambda: key_only.ingest(fx.records, ADMIN))
            with_gpu.ingest(fx.records, ADMIN)
            t_gpu = _timed(lambda: with_gpu.ingest_gpu(rounds, ADMIN))
            r_key = _timed(key_only.recompute_all)
            r_gpu = _timed(with_gpu.recompute_all)
        finally:
            key_only.close()
            with_gpu.close()
    print(f"devices: {n}")
    print(
        f"ingest, per item: key record {t_key / n * 1e3:.3f} ms, GPU round "
        f"{t_gpu / n * 1e3:.3f} ms (x{t_gpu / t_key:.2f})"
    )
    print(
        f"recompute, per device: key only {r_key / n * 1e3:.3f} ms, key + GPU round "
        f"{r_gpu / n * 1e3:.3f} ms (x{r_gpu / r_key:.2f})"
    )


if __name__ == "__main__":
    main()
