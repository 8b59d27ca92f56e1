"""How much slower than light in fibre real Internet paths are, fitted on the shipped RTTs.

The model is empirical and conditional on distance: for each distance band, the quantiles of the
inflation ratio  measured RTT / (2 d / (2/3 c))  over every measured pair of the shipped data
(WonderNetwork 2020 and RIPE Atlas 2023, see data/rtt-public/README.md). Short paths are
relatively slower (fixed switching and last-mile delay), so one distribution for all distances
would overstate long paths and understate short ones.

Used to draw realistic RTTs for simulated and emulated devices (`sample_rtt_ms`; the fleet
simulator fits it with FINE_DISTANCE_BANDS_KM, so that paths under 100 km, where fixed costs
dominate, get their own distribution), and to ask "would an honest device here be verifiable at
the median network" for coverage maps. It never feeds a verdict.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lightfence.geo.sphere import great_circle_km
from lightfence.units import Bound

DISTANCE_BANDS_KM = (0.0, 500.0, 2000.0, 6000.0, np.inf)
FINE_DISTANCE_BANDS_KM = (0.0, 100.0, 500.0, 2000.0, 6000.0, np.inf)
"""For drawing RTTs at every distance: the measured ratio under 100 km (median 7.5) is twice that
of 100-500 km (3.7); the shipped data has 73 pairs under 100 km."""
QUANTILE_POINTS = 101
MIN_PAIRS_PER_BAND = 30


@dataclass(frozen=True)
class LatencyModel:
    band_edges_km: tuple[float, ...]
    """Distance band edges; band i is [edges[i], edges[i + 1])."""
    inflation_quantiles: NDArray[np.float64]
    """(bands, QUANTILE_POINTS): inflation ratio at quantiles 0, 0.01, ..., 1 per band."""
    pairs_per_band: tuple[int, ...]

    def _band(self, distance_km: NDArray[np.float64]) -> NDArray[np.int64]:
        edges = np.asarray(self.band_edges_km[1:-1])
        return np.asarray(np.searchsorted(edges, distance_km, side="right"), dtype=np.int64)

    def inflation(self, distance_km: ArrayLike, quantile: ArrayLike) -> NDArray[np.float64]:
        """Inflation ratio at `quantile` (0..1) for paths of `distance_km`."""
        d = np.asarray(distance_km, dtype=np.float64)
        q = np.clip(np.asarray(quantile, dtype=np.float64), 0.0, 1.0)
        d, q = np.broadcast_arrays(d, q)
        shape = d.shape
        d, q = d.ravel(), q.ravel()
        pos = q * (QUANTILE_POINTS - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, QUANTILE_POINTS - 1)
        frac = pos - lo
        band = self._band(d)
        table = self.inflation_quantiles
        out = table[band, lo] * (1.0 - frac) + table[band, hi] * frac
        return np.asarray(out.reshape(shape), dtype=np.float64)

    def sample_inflation(
        self, rng: np.random.Generator, distance_km: ArrayLike
    ) -> NDArray[np.float64]:
        d = np.asarray(distance_km, dtype=np.float64)
        return self.inflation(d, rng.uniform(0.0, 1.0, size=d.shape))

    @staticmethod
    def fibre_rtt_ms(distance_km: ArrayLike) -> NDArray[np.float64]:
        """The fastest possible RTT through fibre over a great-circle path."""
        return np.asarray(
            2.0 * np.asarray(distance_km, dtype=np.float64) / Bound.FIBRE.speed_km_per_ms
        )

    def rtt_ms(self, distance_km: ArrayLike, quantile: ArrayLike) -> NDArray[np.float64]:
        """Modelled minimum RTT for a path of `distance_km` at network quantile `quantile`."""
        return self.fibre_rtt_ms(distance_km) * self.inflation(distance_km, quantile)

    def sample_rtt_ms(
        self, distance_km: ArrayLike, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """One random RTT per path length, never below the fibre minimum of that path.

        The fibre minimum is 1.5 times the vacuum minimum that verdicts assume, so a simulated
        RTT never beats physics. The shipped data never beats fibre either (lowest ratio 1.02);
        the floor at 1 only guards data added later.
        """
        d = np.asarray(distance_km, dtype=np.float64)
        inflation = np.maximum(self.sample_inflation(rng, d), 1.0)
        return np.asarray(self.fibre_rtt_ms(d) * inflation, dtype=np.float64)


def fit_latency_model(
    distance_km: ArrayLike,
    rtt_ms: ArrayLike,
    band_edges_km: tuple[float, ...] = DISTANCE_BANDS_KM,
) -> LatencyModel:
    """Empirical inflation quantiles per distance band. Bands with too few pairs borrow the
    next band's distribution, so the model is defined at every distance."""
    d = np.asarray(distance_km, dtype=np.float64)
    rtt = np.asarray(rtt_ms, dtype=np.float64)
    keep = (d > 1.0) & np.isfinite(rtt) & (rtt > 0)
    d, rtt = d[keep], rtt[keep]
    if len(d) < MIN_PAIRS_PER_BAND:
        raise ValueError(f"need at least {MIN_PAIRS_PER_BAND} measured pairs, got {len(d)}")
    ratio = rtt / LatencyModel.fibre_rtt_ms(d)
    qs = np.linspace(0.0, 1.0, QUANTILE_POINTS)
    edges = band_edges_km
    tables: list[NDArray[np.float64] | None] = []
    counts: list[int] = []
    for lo, hi in itertools.pairwise(edges):
        sel = ratio[(d >= lo) & (d < hi)]
        counts.append(len(sel))
        tables.append(np.quantile(sel, qs) if len(sel) >= MIN_PAIRS_PER_BAND else None)
    overall = np.quantile(ratio, qs)
    for i in range(len(tables) - 1, -1, -1):
        if tables[i] is None:
            nxt = tables[i + 1] if i + 1 < len(tables) else None
            tables[i] = nxt if nxt is not None else overall
    stacked = np.stack([t for t in tables if t is not None])
    return LatencyModel(
        band_edges_km=tuple(float(e) for e in edges),
        inflation_quantiles=stacked,
        pairs_per_band=tuple(counts),
    )


def shipped_pairs() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(great-circle km, min RTT ms) of every measured pair of the packaged rtt-public data
    whose two ends have coordinates."""
    base = resources.files("lightfence").joinpath("data", "rtt-public")
    pos: dict[str, tuple[float, float]] = {}
    for name in ("landmarks.csv", "targets.csv"):
        with base.joinpath(name).open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                pos[row["id"]] = (float(row["lat"]), float(row["lon"]))
    src: list[tuple[float, float]] = []
    dst: list[tuple[float, float]] = []
    rtts: list[float] = []
    with base.joinpath("rtts.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["src_id"] in pos and row["dst_id"] in pos:
                src.append(pos[row["src_id"]])
                dst.append(pos[row["dst_id"]])
                rtts.append(float(row["min_rtt_ms"]))
    a = np.asarray(src)
    b = np.asarray(dst)
    d = great_circle_km(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    return np.asarray(d, dtype=np.float64), np.asarray(rtts, dtype=np.float64)


@cache
def shipped_latency_model(band_edges_km: tuple[float, ...] = DISTANCE_BANDS_KM) -> LatencyModel:
    """The model fitted on every RTT row of the packaged rtt-public data."""
    d, rtt = shipped_pairs()
    return fit_latency_model(d, rtt, band_edges_km)
