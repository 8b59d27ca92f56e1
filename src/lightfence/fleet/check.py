"""Verdicts against the simulator's ground truth: the soundness check at fleet scale.

A verdict is judged against the position of the *responder*, the host that held the device key
and answered the challenges, because that is all physics can see. For every scenario but
`cloned_key` the responder is the GPU itself. A clone verified at its own (allowed) site while
the GPU sits elsewhere is the one attack delay cannot catch; it is counted apart
(`verified_clones`), as the reason device keys must live in hardware.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import Policy, claimed_region

VERIFIED = VerdictKind.VERIFIED.value
REFUTED = VerdictKind.REFUTED.value
NO_VERDICT = "(no verdict)"


@dataclass(frozen=True)
class FleetCheck:
    counts: pd.DataFrame
    """Devices per scenario (rows) and verdict (columns)."""
    false_verified: int
    """VERIFIED while the responder is outside the allowed region: must be 0."""
    false_refuted: int
    """REFUTED while the responder is inside the claimed country: must be 0."""
    verified_clones: int
    """cloned_key devices VERIFIED at the clone's site while the GPU is not allowed there."""
    unknown_devices: int
    """Verdicts for device ids the ground truth does not know: must be 0."""

    @property
    def sound(self) -> bool:
        return self.false_verified == 0 and self.false_refuted == 0 and self.unknown_devices == 0


def check_verdicts(verdicts: pd.DataFrame, truth: pd.DataFrame, policy: Policy) -> FleetCheck:
    """Join verdicts to the ground truth by device_id and count what is wrong."""
    truth = truth.reset_index(drop=True)
    joined = truth.merge(verdicts[["device_id", "verdict"]], on="device_id", how="left")
    unknown = int((~verdicts["device_id"].isin(truth["device_id"])).sum())
    verdict = joined["verdict"].fillna(NO_VERDICT).astype(str).to_numpy()
    claimed = joined["claimed_country"].astype(str).to_numpy()
    resp_in_allowed = _allowed(policy, claimed, joined["responder_lat"], joined["responder_lon"])
    gpu_in_allowed = _allowed(policy, claimed, joined["true_lat"], joined["true_lon"])
    resp_in_claim = _in_claim(claimed, joined["responder_lat"], joined["responder_lon"])
    is_verified = verdict == VERIFIED
    counts = pd.crosstab(joined["scenario"].astype(str), pd.Series(verdict, name="verdict"))
    return FleetCheck(
        counts=counts,
        false_verified=int((is_verified & ~resp_in_allowed).sum()),
        false_refuted=int(((verdict == REFUTED) & resp_in_claim).sum()),
        verified_clones=int(
            (is_verified & ~gpu_in_allowed & (joined["scenario"].astype(str) == "cloned_key")).sum()
        ),
        unknown_devices=unknown,
    )


def _allowed(
    policy: Policy, claimed: NDArray[np.str_], lat: pd.Series, lon: pd.Series
) -> NDArray[np.bool_]:
    la, lo = lat.to_numpy(dtype=np.float64), lon.to_numpy(dtype=np.float64)
    if policy.allowed is not None:
        return np.asarray(policy.allowed.contains(la, lo), dtype=bool)
    out = np.zeros(len(la), dtype=bool)
    for code in np.unique(claimed):
        if code and code not in ("nan", "None"):
            rows = claimed == code
            out[rows] = policy.allowed_for(code).contains(la[rows], lo[rows])
    return out


def _in_claim(claimed: NDArray[np.str_], lat: pd.Series, lon: pd.Series) -> NDArray[np.bool_]:
    la, lo = lat.to_numpy(dtype=np.float64), lon.to_numpy(dtype=np.float64)
    out = np.zeros(len(la), dtype=bool)
    for code in np.unique(claimed):
        if code and code not in ("nan", "None"):
            rows = claimed == code
            out[rows] = claimed_region(code).contains(la[rows], lo[rows])
    return out
