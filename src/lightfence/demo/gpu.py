"""The demo's GPU-signed rounds: a GPU stand-in per device whose GPU is not where its key is.

Every demo landmark also serves GPU rounds on its own socket (landmark/gpu_server.py), appraising
under the demo's test root. A device with a `gpu_at` runs GPU sessions (agent/gpu_measure.py)
over real UDP through relays that add the modelled path delay from where the GPU really is; the
stand-in signs in line and takes its drawn signing time S. Only the network delay and the GPU
are emulated. The verifier service does not ingest GPU rounds yet: the device verdict that
combines the verifier's key records with the GPU rounds is computed here, as `lightfence verify`
would.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from lightfence.agent.gpu_measure import GpuRoundResult, run_gpu_session
from lightfence.attestation import AppraisalPolicy, ChainCache
from lightfence.crypto.keys import SigningKey
from lightfence.demo.scenario import DEMO_POLICY
from lightfence.evidence.bundle import EvidenceBundle, check_bundle
from lightfence.evidence.calibration import parse_calibration, sign_calibration
from lightfence.evidence.verdict import DeviceVerdict, device_verdict
from lightfence.identity.gpu_signer import GpuReport
from lightfence.model.registry import LandmarkEntry, split_address
from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord
from lightfence.protocol.record import MeasurementRecord
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
        probe = GpuStandIn(self.root)
        doc = sign_calibration(
            [
                {
                    "hwmodel": STANDIN_HWMODEL,
                    "vbios_version": probe.vbios_version,
                    "s_floor_ns": round(probe.signing_time.floor_ms * 1e6),
                }
            ],
            calibrator,
        )
        self.calibration = parse_calibration(doc, {calibrator.public_bytes})

    def path_rtt_ms(self, dev: FleetDevice, lm: RunningLandmark) -> float:
        """Emulated RTT from where `dev`'s GPU really is to landmark `lm` (modelled)."""
        assert dev.spec.gpu_at is not None
        at = Site(dev.spec.gpu_at[0], dev.spec.gpu_at[1], None)
        return path_rtt_ms(self.dataset, at, site_of(self.dataset, lm.site.host_id))

    def measure(self, dev: FleetDevice, rounds: int = 3) -> list[GpuRound]:
        """GPU sessions of `dev` with every landmark, over real UDP through the path relays:
        the stand-in signs in line and sleeps its drawn signing time S, as a GPU would take it.
        (Sessions run concurrently here; one real GPU would sign them in turn.)"""
        gpu = self._gpus.setdefault(dev.spec.name, GpuStandIn(self.root))
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

    def verdict(
        self,
        dev: FleetDevice,
        key_records: Sequence[MeasurementRecord],
        gpu_rounds: Sequence[GpuRound],
        landmarks: Sequence[RunningLandmark],
    ) -> DeviceVerdict:
        entries = {
            lm.site.id: LandmarkEntry(lm.site.id, lm.key.public_bytes, lm.lat, lm.lon)
            for lm in landmarks
        }
        bundle = EvidenceBundle(
            dev.identity,
            tuple(key_records),
            tuple(entries.values()),
            time.time_ns(),
            tuple(gpu_rounds),
        )
        check = check_bundle(
            bundle,
            entries,
            now_unix_ns=time.time_ns(),
            gpu_policy=self.policy,
            calibration=self.calibration,
        )
        return device_verdict(check, DEMO_POLICY)
