"""A latency model fitted on the shipped real RTTs, for the fleet simulator.

    rtt_ms = fibre_min_ms(d) * I + B
    fibre_min_ms(d) = 2 d / (2/3 c)          the fastest a fibre path of length d allows
    I = 1 + exp(N(mu, sigma))                path inflation (routes are longer than d, queues)
    B ~ Exponential(base_mean_ms)            fixed costs: last mile, switching, the host's stack

`I >= 1` and `B >= 0`, so a simulated RTT is never below the fibre minimum, which is itself 1.5
times the vacuum minimum that the verdict engine assumes: the simulator never produces an RTT that
physics forbids.

Fit (`fit_latency_model`), on the shipped rtt-public pairs with both ends' coordinates:
* mu, sigma: mean and standard deviation of log(rtt / fibre_min - 1) over pairs at least
  LONG_PAIR_KM apart, where the fixed costs are small next to the propagation time;
* base_mean_ms: the median of (rtt - fibre_min * median I) over pairs under SHORT_PAIR_KM apart,
  clipped below at MIN_BASE_MS.
On the shipped data (18,502 long pairs) this gives mu = 0.00, sigma = 0.61 (median inflation
2.0, as the data's README reports) and a base of 4.4 ms; docs/fleet.md compares simulated and
measured ratios by distance band.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lightfence.geo.sphere import great_circle_km
from lightfence.units import Bound

LONG_PAIR_KM = 1000.0
SHORT_PAIR_KM = 500.0
MIN_BASE_MS = 0.1


@dataclass(frozen=True)
class LatencyModel:
    inflation_log_mu: float
    """Mean of log(I - 1)."""
    inflation_log_sigma: float
    """Standard deviation of log(I - 1)."""
    base_mean_ms: float
    """Mean of the exponential fixed-cost term B, ms."""
    fitted_pairs: int = 0
    """How many measured pairs the inflation was fitted on (0: not fitted)."""

    def median_inflation(self) -> float:
        return 1.0 + float(np.exp(self.inflation_log_mu))

    def sample_rtt_ms(self, path_km: ArrayLike, rng: np.random.Generator) -> NDArray[np.float64]:
        """One RTT per path length (km along the ground, end to end)."""
        d = np.asarray(path_km, dtype=np.float64)
        inflation = 1.0 + rng.lognormal(self.inflation_log_mu, self.inflation_log_sigma, d.shape)
        base = rng.exponential(self.base_mean_ms, d.shape)
        return np.asarray(fibre_min_ms(d) * inflation + base, dtype=np.float64)


def fibre_min_ms(path_km: ArrayLike) -> NDArray[np.float64]:
    """The shortest RTT a glass-fibre path of this length allows."""
    return np.asarray(2.0 * np.asarray(path_km) / Bound.FIBRE.speed_km_per_ms, dtype=np.float64)


def shipped_pairs() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(great-circle km, min RTT ms) of every measured pair in the shipped rtt-public data."""
    base = resources.files("lightfence") / "data" / "rtt-public"
    pos: dict[str, tuple[float, float]] = {}
    for name in ("landmarks.csv", "targets.csv"):
        with (base / name).open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                pos[row["id"]] = (float(row["lat"]), float(row["lon"]))
    a: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    rtt: list[float] = []
    with (base / "rtts.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["src_id"] in pos and row["dst_id"] in pos:
                a.append(pos[row["src_id"]])
                b.append(pos[row["dst_id"]])
                rtt.append(float(row["min_rtt_ms"]))
    pa, pb = np.asarray(a), np.asarray(b)
    d = great_circle_km(pa[:, 0], pa[:, 1], pb[:, 0], pb[:, 1])
    return d, np.asarray(rtt, dtype=np.float64)


@cache
def fit_latency_model() -> LatencyModel:
    """Fit the model on the shipped data (see the module docstring); cached."""
    d, rtt = shipped_pairs()
    fibre = fibre_min_ms(d)
    long = (d >= LONG_PAIR_KM) & (rtt > fibre)
    log_excess = np.log(rtt[long] / fibre[long] - 1.0)
    mu = float(log_excess.mean())
    sigma = float(log_excess.std())
    median_inflation = 1.0 + float(np.exp(mu))
    short = d < SHORT_PAIR_KM
    base = float(np.median(rtt[short] - fibre[short] * median_inflation))
    return LatencyModel(
        inflation_log_mu=mu,
        inflation_log_sigma=sigma,
        base_mean_ms=max(base, MIN_BASE_MS),
        fitted_pairs=int(long.sum()),
    )
