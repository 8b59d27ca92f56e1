"""Would an honest device at a point be VERIFIED, and how much network slack would the proof take?

For each point (a grid cell centre, a site, a host) and each of its K nearest landmarks, the
modelled RTT is the fibre minimum over the great-circle path times an inflation factor: either
the shipped latency model's inflation at quantile Q (sim.latency, fitted on the real data; Q = 0.5
is the median network), or one uniform factor s for every landmark. The verdict comes from the
verdict engine (core.batch.decide_batch) on exactly those RTTs; nothing here decides by itself.

`max_inflation` is the largest uniform s (RTT = s × fibre minimum to every landmark) under which
the point stays VERIFIED, found by a vectorised bisection in log space over all points at once.
Larger RTTs give larger caps, so F only grows with s and "verified at s" can only turn off as s
grows: the bisection is well posed. 0 means not verifiable even at the fibre minimum.

Pruning to the K nearest landmarks can only lose verifiability, never invent it: dropping caps
can only enlarge F (an intersection of fewer sets), and VERIFIED means F lies in the allowed
region, so if the K-cap F lies inside it so does the all-cap F. Dropped caps are the largest ones
(RTT grows with distance), which rarely cut F; tests check the loss is small.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import Policy
from lightfence.coverage.inputs import Places
from lightfence.geo.sphere import Float64Array, great_circle_km
from lightfence.sim.latency import LatencyModel, shipped_latency_model

DEFAULT_K = 8
"""Nearest landmarks kept per point. The ninth nearest cap is rarely the one that closes F."""
DEFAULT_QUANTILE = 0.5
MIN_PATH_KM = 10.0
"""Shortest modelled path: a device in a landmark's own city still sits kilometres of metro
fibre away. A longer path means a larger RTT and cap, so the floor can only lose verifiability."""
MAX_INFLATION = 64.0
"""Top of the bisection: RTTs 64 times the fibre minimum; points verified there report 64."""
BISECTION_STEPS = 7
"""Steps over log [1, 64]: the reported slack is within a factor 64^(1/128) = 1.033 below the
true threshold (it is the last factor found verified, so never above it)."""
CHUNK_POINTS = 256
"""Points per engine call: keeps memory small and gives progress a beat."""

Progress = Callable[[int], None]
"""Called with the number of point-evaluations just finished."""


@dataclass(frozen=True)
class Neighbours:
    """The K nearest landmarks of each point."""

    idx: NDArray[np.int64]
    """(n, k) landmark index, nearest first."""
    dist_km: Float64Array
    """(n, k) great-circle distance, km; inf where a point has fewer than k landmarks."""

    @property
    def valid(self) -> NDArray[np.bool_]:
        return np.asarray(np.isfinite(self.dist_km))

    def path_km(self) -> Float64Array:
        return np.asarray(np.maximum(np.where(self.valid, self.dist_km, MIN_PATH_KM), MIN_PATH_KM))


def nearest_landmarks(
    lat: Float64Array,
    lon: Float64Array,
    landmarks: Places,
    k: int = DEFAULT_K,
    exclude_within_km: float = 0.0,
) -> Neighbours:
    """The k nearest landmarks of each point. Landmarks closer than `exclude_within_km` are left
    out (a host evaluated against a landmark list that contains the host itself)."""
    n = len(lat)
    k = max(1, min(k, len(landmarks)))
    idx = np.zeros((n, k), dtype=np.int64)
    dist = np.full((n, k), np.inf)
    for lo in range(0, n, 2048):
        hi = min(lo + 2048, n)
        d = great_circle_km(
            lat[lo:hi, None], lon[lo:hi, None], landmarks.lat[None, :], landmarks.lon[None, :]
        )
        d = np.where(d < exclude_within_km, np.inf, d)
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.argsort(d, 1)
        dk = np.take_along_axis(d, part, axis=1)
        order = np.argsort(dk, axis=1)
        idx[lo:hi] = np.take_along_axis(part, order, axis=1)
        dist[lo:hi] = np.take_along_axis(dk, order, axis=1)
    return Neighbours(idx=idx, dist_km=dist)


def quantile_rtt_ms(
    neighbours: Neighbours, quantile: float, model: LatencyModel | None = None
) -> Float64Array:
    """(n, k) modelled RTTs at network quantile `quantile` of the latency model."""
    m = model or shipped_latency_model()
    path = neighbours.path_km()
    return m.rtt_ms(path, np.full_like(path, quantile))


def scaled_rtt_ms(neighbours: Neighbours, inflation: Float64Array | float) -> Float64Array:
    """(n, k) RTTs of `inflation` (per point, or one for all) times the fibre minimum."""
    path = neighbours.path_km()
    s = np.asarray(inflation, dtype=np.float64)
    s = s[:, None] if s.ndim == 1 else s
    return np.asarray(LatencyModel.fibre_rtt_ms(path) * s)


def measurement_table(
    landmarks: Places, neighbours: Neighbours, rtt_ms: Float64Array, rows: NDArray[np.int64]
) -> MeasurementTable:
    """The engine's input for the points `rows`: each point measured by its valid neighbours."""
    valid = neighbours.valid[rows]
    counts = valid.sum(axis=1)
    lm = neighbours.idx[rows][valid]
    return MeasurementTable(
        device_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        lat_deg=landmarks.lat[lm],
        lon_deg=landmarks.lon[lm],
        rtt_ms=rtt_ms[rows][valid],
        floor_ms=np.zeros(len(lm)),
        position_error_km=np.zeros(len(lm)),
    )


def verified(
    landmarks: Places,
    neighbours: Neighbours,
    rtt_ms: Float64Array,
    policy: Policy,
    country: Sequence[str | None],
    rows: NDArray[np.int64] | None = None,
    progress: Progress | None = None,
) -> NDArray[np.bool_]:
    """Whether each point of `rows` (default: all) would be VERIFIED with these RTTs.

    Under in-declared-country each point declares the country it lies in (`country`); the engine
    then tests the policy `in:<that country>`, which is what allowed_for() gives it, so points are
    grouped by country and no REFUTED test is spent on honest devices. A point with no country
    (at sea) has nothing to declare and is not verifiable under that policy.
    """
    rows = np.arange(len(country), dtype=np.int64) if rows is None else rows
    out = np.zeros(len(rows), dtype=bool)
    groups: dict[str | None, list[int]] = {}
    for j, r in enumerate(rows.tolist()):
        groups.setdefault(None if policy.allowed is not None else country[r], []).append(j)
    for code, members in groups.items():
        sub = np.asarray(members, dtype=np.int64)
        if policy.allowed is None and code is None:
            if progress:
                progress(len(sub))
            continue
        group_policy = policy
        if code is not None:
            group_policy = Policy(
                text=f"{'in+sea' if policy.sea else 'in'}:{code}",
                allowed=policy.allowed_for(code),
                bound=policy.bound,
                liars=policy.liars,
            )
        for lo in range(0, len(sub), CHUNK_POINTS):
            part = sub[lo : lo + CHUNK_POINTS]
            table = measurement_table(landmarks, neighbours, rtt_ms, rows[part])
            kinds = decide_batch(table, group_policy).kind
            out[part] = kinds == VerdictKind.VERIFIED.code
            if progress:
                progress(len(part))
    return out


@dataclass(frozen=True)
class Coverage:
    verifiable: NDArray[np.bool_]
    """(n,) VERIFIED at the modelled quantile."""
    max_inflation: Float64Array
    """(n,) largest uniform RTT / fibre-minimum factor still VERIFIED; 0: none; 64: 64 or more."""
    quantile: float
    k: int

    @property
    def share(self) -> float:
        return float(self.verifiable.mean()) if len(self.verifiable) else 0.0


def work_units(points: int) -> int:
    """Point-evaluations `evaluate` reports to its progress callback (for a progress bar)."""
    return points * (3 + BISECTION_STEPS)


def evaluate(
    lat: Float64Array,
    lon: Float64Array,
    country: Sequence[str | None],
    landmarks: Places,
    policy: Policy,
    quantile: float = DEFAULT_QUANTILE,
    k: int = DEFAULT_K,
    exclude_within_km: float = 0.0,
    progress: Progress | None = None,
) -> Coverage:
    """Verifiability at `quantile` and the slack `max_inflation` of every point."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    n = len(lat)
    nb = nearest_landmarks(lat, lon, landmarks, k, exclude_within_km)
    tick = progress or (lambda _: None)
    at_q = verified(landmarks, nb, quantile_rtt_ms(nb, quantile), policy, country, None, tick)
    every = np.arange(n, dtype=np.int64)
    ok_lo = verified(landmarks, nb, scaled_rtt_ms(nb, 1.0), policy, country, every, tick)
    lo = np.where(ok_lo, 1.0, 0.0)
    hi = np.full(n, 1.0)
    live = np.flatnonzero(ok_lo)
    tick(n - len(live))
    top = verified(landmarks, nb, scaled_rtt_ms(nb, MAX_INFLATION), policy, country, live, tick)
    lo[live[top]] = MAX_INFLATION
    live = live[~top]
    hi[live] = MAX_INFLATION
    for _ in range(BISECTION_STEPS):
        tick(n - len(live))
        mid = np.sqrt(lo * hi)
        ok = verified(landmarks, nb, scaled_rtt_ms(nb, mid), policy, country, live, tick)
        lo[live[ok]] = mid[live[ok]]
        hi[live[~ok]] = mid[live[~ok]]
    return Coverage(verifiable=at_q, max_inflation=lo, quantile=quantile, k=nb.idx.shape[1])
