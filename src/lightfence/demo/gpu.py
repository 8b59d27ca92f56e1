"""The demo's GPU-signed rounds: a GPU stand-in per device whose GPU is not where its key is.

The demo's landmarks serve key rounds only (GPU rounds have their own socket and transport,
protocol/gpu_session.py, which the demo does not start), so these rounds are emulated
(sim/gpu.emulate_gpu_round): the RTT is the modelled path from the GPU to each landmark plus
the stand-in's signing time; the nonce derivation, the GPU's signature, the landmark's
appraisal and signed record, and the offline re-check and verdict are the real code. The
verifier service does not ingest GPU rounds yet either: the device verdict that combines the
verifier's key records with the GPU rounds is computed here, as `lightfence verify` would.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lightfence.attestation import AppraisalPolicy, ChainCache
from lightfence.crypto.keys import SigningKey
from lightfence.demo.scenario import DEMO_POLICY
from lightfence.evidence.bundle import EvidenceBundle, check_bundle
from lightfence.evidence.calibration import parse_calibration, sign_calibration
from lightfence.evidence.verdict import DeviceVerdict, device_verdict
from lightfence.model.registry import LandmarkEntry
from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord
from lightfence.protocol.record import MeasurementRecord
from lightfence.rttdata import Dataset
from lightfence.sim.emulate import Site, path_rtt_ms, site_of
from lightfence.sim.gpu import STANDIN_HWMODEL, GpuStandIn, GpuTestRoot, emulate_gpu_round

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

    def rounds(
        self, dev: FleetDevice, landmarks: Sequence[RunningLandmark], per_landmark: int = 3
    ) -> list[GpuRound]:
        """GPU rounds of `dev` against every landmark, timed from where the GPU really is."""
        assert dev.spec.gpu_at is not None
        gpu = self._gpus.setdefault(dev.spec.name, GpuStandIn(self.root))
        at = Site(dev.spec.gpu_at[0], dev.spec.gpu_at[1], None)
        out: list[GpuRound] = []
        for lm in landmarks:
            path_ms = path_rtt_ms(self.dataset, at, site_of(self.dataset, lm.site.host_id))
            session = self.rng.randbytes(16)
            for round_no in range(per_landmark):
                r = emulate_gpu_round(
                    landmark_id=lm.site.id,
                    landmark_key=lm.key,
                    device_id=dev.device_id,
                    gpu=gpu,
                    path_rtt_ms=path_ms,
                    policy=self.policy,
                    rng=self.rng,
                    utc_ns=time.time_ns(),
                    session_id=session,
                    round_no=round_no,
                )
                if r.record is not None:
                    out.append((r.record, r.evidence))
        return out

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
