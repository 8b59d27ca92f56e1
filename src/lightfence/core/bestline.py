"""Per-landmark CBG "bestline" calibration (Gueye et al., "Constraint-based geolocation of
Internet hosts", IEEE/ACM ToN 2006).

For one landmark, each other landmark gives a point (distance km, RTT ms). The bestline is the
line rtt = m * d + b that lies below every point and is closest to them (least total vertical
distance), with m at least the physical baseline slope (a round trip at 2/3 c) and b >= 0.
Inverting it turns an RTT into a distance the landmark's own data never exceeded.

Closed form: minimising sum(y_i - m x_i - b) under the constraints is maximising m * mean(x) + b,
the height at mean(x) of a line below all points. The highest such line at a given slope m is
min_i(y_i - m x_i), a concave function of m whose maximum is the slope of the lower convex hull
edge spanning mean(x). Clamping that slope into [baseline, min y/x] (the latter keeps b >= 0) is
therefore optimal. Only lower-hull vertices matter, which makes leave-one-out refits cheap.

Used only for the display estimate, never for a verdict.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lightfence.units import Bound

BASELINE_SLOPE_MS_PER_KM = 2.0 / Bound.FIBRE.speed_km_per_ms
"""RTT per km of a round trip at 2/3 c: no bestline may claim a faster network than fibre."""


@dataclass(frozen=True)
class Bestline:
    """rtt_ms = slope_ms_per_km * distance_km + intercept_ms, fitted for one landmark."""

    landmark_id: str
    slope_ms_per_km: float
    intercept_ms: float

    def max_distance_km(self, rtt_ms: float) -> float:
        """Distance the calibration says an RTT allows; 0 when the RTT is below the intercept."""
        return max(0.0, (rtt_ms - self.intercept_ms) / self.slope_ms_per_km)


def _lower_hull(x: NDArray[np.float64], y: NDArray[np.float64]) -> list[int]:
    """Indices of the lower convex hull vertices, left to right; x must be sorted (then y)."""
    hull: list[int] = []
    for k in range(len(x)):
        if hull and x[hull[-1]] == x[k]:
            continue  # same distance, higher RTT (sorted by y): never on the lower hull
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            cross = (x[j] - x[i]) * (y[k] - y[i]) - (y[j] - y[i]) * (x[k] - x[i])
            if cross > 0.0:
                break
            hull.pop()
        hull.append(k)
    return hull


def _fit_on_hull(
    landmark_id: str, hx: NDArray[np.float64], hy: NDArray[np.float64], mean_x: float
) -> Bestline:
    baseline = BASELINE_SLOPE_MS_PER_KM
    positive = hx > 0.0
    with np.errstate(over="ignore"):  # a subnormal distance: that point allows any slope
        max_slope = float(np.min(hy[positive] / hx[positive])) if np.any(positive) else np.inf
    if max_slope < baseline:
        # A point faster than fibre allows: the landmark (or its partner) is mis-surveyed. No line
        # can meet every constraint; the physical baseline is the honest answer.
        return Bestline(landmark_id, baseline, 0.0)
    if len(hx) == 1:
        slope = baseline
    else:
        edge = int(np.clip(np.searchsorted(hx, mean_x, side="right") - 1, 0, len(hx) - 2))
        slope = float((hy[edge + 1] - hy[edge]) / (hx[edge + 1] - hx[edge]))
    slope = min(max(slope, baseline), max_slope)
    intercept = max(0.0, float(np.min(hy - slope * hx)))
    return Bestline(landmark_id, slope, intercept)


def fit_bestline(
    landmark_id: str, distances_km: Iterable[float], rtts_ms: Iterable[float]
) -> Bestline | None:
    """Bestline of one landmark from its (distance, RTT) points; None without any point."""
    x = np.asarray(list(distances_km), dtype=np.float64)
    y = np.asarray(list(rtts_ms), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("distances and RTTs must have the same length")
    if x.size == 0:
        return None
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("calibration distances and RTTs must be finite")
    if np.any(x < 0.0) or np.any(y <= 0.0):
        raise ValueError("calibration distances must be >= 0 and RTTs > 0")
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    hull = _lower_hull(x, y)
    return _fit_on_hull(landmark_id, x[hull], y[hull], float(np.mean(x)))


@dataclass(frozen=True)
class _Points:
    x: NDArray[np.float64]
    """Distances to the other landmarks, sorted ascending (ties by RTT)."""
    y: NDArray[np.float64]
    others: tuple[str, ...]
    hull: list[int]
    full: Bestline


class BestlineCalibration:
    """Bestlines of every landmark, with cheap leave-one-out refits.

    Built from unordered landmark pairs (a, b, distance_km, rtt_ms); each pair is a calibration
    point for both a and b. `bestlines(exclude=t)` gives the lines fitted without any row that
    involves t: lines whose points do not include t are reused, lines where t is not a hull vertex
    are refitted on the unchanged hull with the new mean distance, and only the rest rebuild
    their hull.
    """

    def __init__(self, rows: Iterable[tuple[str, str, float, float]]) -> None:
        per_landmark: dict[str, list[tuple[float, float, str]]] = {}
        for a, b, distance_km, rtt_ms in rows:
            if a == b:
                raise ValueError(f"calibration row pairs landmark {a!r} with itself")
            per_landmark.setdefault(a, []).append((distance_km, rtt_ms, b))
            per_landmark.setdefault(b, []).append((distance_km, rtt_ms, a))
        self._points: dict[str, _Points] = {}
        for landmark_id, points in per_landmark.items():
            points.sort()
            x = np.array([p[0] for p in points], dtype=np.float64)
            y = np.array([p[1] for p in points], dtype=np.float64)
            full = fit_bestline(landmark_id, x, y)
            assert full is not None  # at least one point by construction
            hull = _lower_hull(x, y)
            self._points[landmark_id] = _Points(x, y, tuple(p[2] for p in points), hull, full)

    @property
    def landmark_ids(self) -> tuple[str, ...]:
        return tuple(self._points)

    def bestlines(self, exclude: str | Collection[str] | None = None) -> dict[str, Bestline]:
        """Bestline per landmark, fitted without any calibration row involving `exclude` (one
        host id, or several: a site's hosts)."""
        excluded: Collection[str] = (
            () if exclude is None else {exclude} if isinstance(exclude, str) else exclude
        )
        lines: dict[str, Bestline] = {}
        for landmark_id, p in self._points.items():
            if landmark_id in excluded:
                continue
            if not any(e in p.others for e in excluded):
                lines[landmark_id] = p.full
                continue
            keep = np.array([other not in excluded for other in p.others])
            if not np.any(keep):
                continue  # no calibration left: the estimate falls back to the baseline
            mean_x = float(np.mean(p.x[keep]))
            hull = p.hull
            if any(not keep[k] for k in hull):
                x, y = p.x[keep], p.y[keep]
                hull = _lower_hull(x, y)
            else:
                x, y = p.x, p.y
            lines[landmark_id] = _fit_on_hull(landmark_id, x[hull], y[hull], mean_x)
        return lines


def fit_bestlines(
    rows: Iterable[tuple[str, str, float, float]], exclude: str | None = None
) -> dict[str, Bestline]:
    """Bestline per landmark from pairs (a, b, distance_km, rtt_ms), leaving out host `exclude`.

    For many leave-one-out fits build one `BestlineCalibration` and call `bestlines` per target.
    """
    return BestlineCalibration(rows).bestlines(exclude)
