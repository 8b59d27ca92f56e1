"""The demo's GPU-signed rounds: a GPU stand-in per device whose GPU is not where its key is.

Every demo landmark also serves GPU rounds on its own socket (landmark/gpu_server.py), appraising
under the demo's test root. A device with a `gpu_at` runs GPU sessions (agent/gpu_measure.py)
over real UDP through relays that add the modelled path delay from where the GPU really is; the
stand-in signs in line and takes its drawn signing time S. Only the network delay and the GPU
are emulated. The landmarks post the signed GPU rounds with the evidence to the verifier service
(POST /gpu-rounds), whose verifier trusts this test root and the signed S_floor calibration
below, and enrols each such device with its stand-in's GPU id: the service decides the device
verdict and raises the key-gpu-mismatch alert.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from lightfence.agent.gpu_measure import GpuRoundResult, run_gpu_session
from lightfence.attestation import AppraisalPolicy, ChainCache, appraise
from lightfence.crypto.keys import SigningKey
from lightfence.evidence.calibration import parse_calibration, sign_calibration
from lightfence.identity.gpu_signer import GpuReport
from lightfence.model.registry import LandmarkEntry, split_address
from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord
from lightfence.rttdata import Dataset
from lightfence.sim.emulate import Site, path_rtt_ms, site_of
from lightfence.sim.gpu import STANDIN_HWMODEL, GpuStandIn, GpuTestRoot

if TYPE_CHECKING:
    from lightfence.demo.world import FleetDevice, RunningLandmark

GpuRound = tuple[GpuRoundRecord, GpuEvidence]


class DemoGpus:
    """One test root, one stand-in GPU per device that has a `gpu_at`."""

    def __init__(self, dataset: Dataset, seed: int = 16) -> None:
        self.dataset = dataset
        self.root = GpuTestRoot.create()
        self.policy = AppraisalPolicy((self.root.cert,), chain_cache=ChainCache())
        self.rng = random.Random(seed)
        self._gpus: dict[str, GpuStandIn] = {}
        # A signed S_floor for the stand-in's model and firmware, as scripts/gpu_check.py would
        # measure and a calibrator sign: its signing-time floor, a true lower bound of its S.
        calibrator = SigningKey.generate()
        self.calibrator_public_hex = calibrator.public_bytes.hex()
        probe = GpuStandIn(self.root)
        self.calibration_doc = sign_calibration(
            [
                {
                    "hwmodel": STANDIN_HWMODEL,
                    "vbios_version": probe.vbios_version,
                    "s_floor_ns": round(probe.signing_time.floor_ms * 1e6),
                }
            ],
            calibrator,
        )
        self.calibration = parse_calibration(self.calibration_doc, {calibrator.public_bytes})

    def write_trust(self, workdir: Path) -> tuple[Path, Path]:
        """The test root (PEM) and the signed calibration as files, for the verifier's config."""
        root, calibration = workdir / "gpu-test-root.pem", workdir / "gpu-calibration.json"
        root.write_bytes(self.root.pem())
        calibration.write_text(json.dumps(self.calibration_doc))
        return root, calibration

    def gpu_of(self, name: str) -> GpuStandIn:
        return self._gpus.setdefault(name, GpuStandIn(self.root))

    def gpu_id(self, name: str) -> str:
        """The id the appraisal gives device `name`'s stand-in GPU (its licence's gpu_id)."""
        gpu = self.gpu_of(name)
        nonce = bytes(32)
        a = appraise(gpu.report(nonce), gpu.chain_der, nonce, self.policy, time.time())
        assert a.ok and a.gpu is not None, a.reason
        return a.gpu.gpu_id

    def path_rtt_ms(self, dev: FleetDevice, lm: RunningLandmark) -> float:
        """Emulated RTT from where `dev`'s GPU really is to landmark `lm` (modelled)."""
        assert dev.spec.gpu_at is not None
        at = Site(dev.spec.gpu_at[0], dev.spec.gpu_at[1], None)
        return path_rtt_ms(self.dataset, at, site_of(self.dataset, lm.site.host_id))

    def measure(self, dev: FleetDevice, rounds: int = 3) -> list[GpuRound]:
        """GPU sessions of `dev` with every landmark, over real UDP through the path relays:
        the stand-in signs in line and sleeps its drawn signing time S, as a GPU would take it.
        (Sessions run concurrently here; one real GPU would sign them in turn.)"""
        gpu = self.gpu_of(dev.spec.name)
        lock = threading.Lock()

        def signer(nonce: bytes) -> GpuReport:
            with lock:
                s_ms = gpu.signing_time.draw_ms(self.rng)
                report = gpu.report(nonce, self.rng)
            time.sleep(s_ms / 1000)
            return GpuReport(report, gpu.chain_der)

        def one(entry: LandmarkEntry) -> GpuRoundResult:
            assert entry.gpu_address is not None
            host, port = split_address(entry.gpu_address)
            return run_gpu_session(host, port, entry.id, dev.device_id, signer, rounds=rounds)

        with ThreadPoolExecutor(max_workers=len(dev.gpu_entries) or 1) as pool:
            results = list(pool.map(one, dev.gpu_entries))
        return [(r.record, r.evidence) for r in results if r.record and r.evidence]
