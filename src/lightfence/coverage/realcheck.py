"""Does the map predict real verdicts? The check of docs/coverage.md, on the shipped real data.

For each target of rtt-public: its landmarks are the hosts that measured it, the target itself
left out (leave-one-out). The real verdict is core.verdict.decide on its real minimum RTTs from
all of them. Its measured inflation is the lower quartile of real RTT / fibre minimum over its K
nearest landmarks. The map's prediction is the coverage model at the centre of the target's grid
cell, with the same landmarks, at that measured inflation.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

import numpy as np

from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import Policy
from lightfence.core.verdict import VerdictKind, decide
from lightfence.coverage.grid import DEFAULT_RESOLUTION, cell_at, cell_centre
from lightfence.coverage.inputs import Places
from lightfence.coverage.model import DEFAULT_K, nearest_landmarks, scaled_rtt_ms, verified
from lightfence.sim.latency import LatencyModel

MEASURED_QUANTILE = 0.25
"""A target's measured inflation is this quantile of real RTT / fibre minimum over its K nearest
landmarks. The verdict is set by the tightest caps, so the low end of the ratios describes the
caps that do the work better than the median (which overstates them); see docs/coverage.md."""
SAME_HOST_KM = 1.0
"""A landmark this close to the target is the target itself (or its rack): left out."""


@dataclass(frozen=True)
class TargetCheck:
    target: str
    country: str
    landmarks: int
    measured_inflation: float
    real: VerdictKind
    predicted_verified: bool
    nearest_km: float

    @property
    def agrees(self) -> bool:
        return (self.real is VerdictKind.VERIFIED) == self.predicted_verified


def _csv(name: str) -> list[dict[str, str]]:
    ref = resources.files("lightfence").joinpath("data", "rtt-public", name)
    with ref.open("r", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_targets(
    policy: Policy, resolution: int = DEFAULT_RESOLUTION, k: int = DEFAULT_K
) -> list[TargetCheck]:
    pos: dict[str, tuple[float, float]] = {}
    for name in ("landmarks.csv", "targets.csv"):
        for row in _csv(name):
            pos[row["id"]] = (float(row["lat"]), float(row["lon"]))
    targets = _csv("targets.csv")
    pair: dict[tuple[str, str], float] = {}
    for row in _csv("rtts.csv"):
        a, b, rtt = row["src_id"], row["dst_id"], float(row["min_rtt_ms"])
        for key in ((a, b), (b, a)):
            pair[key] = min(pair.get(key, np.inf), rtt)
    landmark_ids = {row["id"] for row in _csv("landmarks.csv")}
    out: list[TargetCheck] = []
    for t in targets:
        tid, code = t["id"], t["country_iso2"]
        tlat, tlon = pos[tid]
        ids = sorted(i for i in landmark_ids if i != tid and (tid, i) in pair)
        lm = Places(
            names=tuple(ids),
            lat=np.asarray([pos[i][0] for i in ids]),
            lon=np.asarray([pos[i][1] for i in ids]),
            country=tuple(None for _ in ids),
            gpus=np.ones(len(ids)),
        )
        # Leave-one-out: the target and any co-located host are not its own landmarks.
        nb = nearest_landmarks(
            np.asarray([tlat]), np.asarray([tlon]), lm, len(ids), exclude_within_km=SAME_HOST_KM
        )
        keep = nb.idx[0][nb.valid[0]]
        measurements = [
            Measurement(Landmark(ids[i], pos[ids[i]][0], pos[ids[i]][1]), pair[(tid, ids[i])])
            for i in keep
        ]
        real = decide(measurements, policy, code).kind
        near = keep[:k]
        fibre = LatencyModel.fibre_rtt_ms(nb.dist_km[0][: len(near)])
        rtts = np.asarray([pair[(tid, ids[i])] for i in near])
        inflation = float(np.quantile(rtts / fibre, MEASURED_QUANTILE))
        clat, clon = cell_centre(cell_at(tlat, tlon, resolution))
        cnb = nearest_landmarks(
            np.asarray([clat]), np.asarray([clon]), lm.take(keep), k, exclude_within_km=0.0
        )
        pred = verified(lm.take(keep), cnb, scaled_rtt_ms(cnb, inflation), policy, [code])
        out.append(
            TargetCheck(
                target=tid,
                country=code,
                landmarks=len(keep),
                measured_inflation=inflation,
                real=real,
                predicted_verified=bool(pred[0]),
                nearest_km=float(nb.dist_km[0][0]),
            )
        )
    return out
