"""Best-guess position of a device from its RTTs: display only, never an input to a verdict.

CBG multilateration (Gueye et al. 2006): each landmark's bestline turns its RTT into a cap, the
estimate is the centroid of the caps' intersection and the error radius the distance from it to
the farthest point of that intersection. The intersection is sampled: points spread evenly by
area over the smallest cap, kept when inside every cap, then resampled once more over the
region's own bounding cap when it is small, so tiny regions are measured as finely as big ones.

Fallbacks, each named in `Estimate.method`:
- a landmark without a bestline gets the plain 2/3 c cap (counted in `baseline_caps`);
- caps that do not intersect are all grown by the smallest common factor f that makes them
  touch (the point minimising the worst distance/radius ratio), times (1 + GROWN_SLACK) so the
  region has an extent, and the estimate is the centroid of that region ("cbg-bestline-grown").

Plain baselines for the evaluation: `shortest_ping` and `cbg_plain_centroid` (2/3 c caps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lightfence.core.bestline import (
    BASELINE_SLOPE_MS_PER_KM,
    Bestline,
    BestlineCalibration,
    fit_bestline,
    fit_bestlines,
)
from lightfence.geo.sphere import (
    Float64Array,
    angle_rad,
    check_lat_lon,
    lat_lon,
    orthogonal_unit,
    unit_vectors,
)
from lightfence.units import EARTH_MEAN_RADIUS_KM, Bound, max_distance_km

__all__ = [
    "BASELINE_SLOPE_MS_PER_KM",
    "Bestline",
    "BestlineCalibration",
    "Estimate",
    "LandmarkLike",
    "MeasurementLike",
    "cbg_plain_centroid",
    "estimate_position",
    "fit_bestline",
    "fit_bestlines",
    "shortest_ping",
]

REGION_SAMPLES = 4000
"""Points sampled per cap; a 1,000 km cap gets one per ~800 km^2 (about 28 km apart)."""
MIN_REGION_POINTS = 200
"""Below this many kept points the region is resampled over its own bounding cap."""
MIN_CAP_RADIUS_KM = 10.0
"""Host coordinates are city-level: an RTT under a bestline's intercept still means 'near', not
'exactly here', so no cap is smaller than this."""
GROWN_SLACK = 0.05
"""Extra growth beyond the touching factor, so a grown region is an area and not a point."""
SEARCH_SAMPLES = 20000
"""Global candidates (about 160 km apart) for the touching point of non-intersecting caps."""
_GOLDEN_ANGLE_RAD = math.pi * (3.0 - math.sqrt(5.0))


class LandmarkLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def position_error_km(self) -> float: ...


class MeasurementLike(Protocol):
    @property
    def landmark(self) -> LandmarkLike: ...
    @property
    def rtt_ms(self) -> float: ...
    @property
    def floor_ms(self) -> float: ...


@dataclass(frozen=True)
class Estimate:
    """A best guess, labelled as such: a point and how far the truth may plausibly be."""

    lat: float
    lon: float
    error_radius_km: float
    method: str
    """cbg-bestline, cbg-bestline-grown, cbg-plain, cbg-plain-grown or shortest-ping."""
    growth_factor: float = 1.0
    """Common factor the caps were grown by (1.0 when they intersected as measured)."""
    baseline_caps: int = 0
    """Landmarks without a bestline, whose cap used the plain 2/3 c bound instead."""


def _effective_rtts(measurements: Sequence[MeasurementLike]) -> Float64Array:
    if not measurements:
        raise ValueError("an estimate needs at least one measurement")
    rtts = np.array([m.rtt_ms for m in measurements], dtype=np.float64)
    floors = np.array([m.floor_ms for m in measurements], dtype=np.float64)
    if not np.all(np.isfinite(rtts)) or np.any(rtts <= 0.0):
        raise ValueError("every RTT must be a finite number of ms above zero")
    if not np.all(np.isfinite(floors)) or np.any(floors < 0.0):
        raise ValueError("every floor must be a finite number of ms at or above zero")
    return np.maximum(rtts - floors, 0.0)


def _centers(measurements: Sequence[MeasurementLike]) -> Float64Array:
    lats = [m.landmark.lat for m in measurements]
    lons = [m.landmark.lon for m in measurements]
    check_lat_lon(lats, lons)
    return unit_vectors(lats, lons)


def _sample_cap(center: Float64Array, radius_rad: float, n: int) -> Float64Array:
    """n points spread evenly by area over a cap (a Fibonacci spiral in the cap's own frame)."""
    radius_rad = min(radius_rad, math.pi)
    k = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - (1.0 - math.cos(radius_rad)) * k / n
    ring = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = k * _GOLDEN_ANGLE_RAD
    e1 = orthogonal_unit(center[None, :])[0]
    e2 = np.cross(center, e1)
    return np.outer(ring * np.cos(phi), e1) + np.outer(ring * np.sin(phi), e2) + np.outer(z, center)


def _worst_ratio(points: Float64Array, centers: Float64Array, radii: Float64Array) -> Float64Array:
    """Per point, the largest (distance to landmark) / (cap radius): <= 1 means inside all caps."""
    # arccos of a dot product (error about 1e-8 rad, 0.1 km) instead of angle_rad: this runs on
    # millions of pairs per estimate, and a display estimate does not need nanometres.
    angles = np.arccos(np.clip(points @ centers.T, -1.0, 1.0))
    return np.asarray(np.max(angles / radii[None, :], axis=1), dtype=np.float64)


def _region(
    centers: Float64Array, radii: Float64Array, limit: float
) -> tuple[Float64Array, Float64Array] | None:
    """Sampled points of the intersection of caps scaled by `limit`, with their ratios."""
    smallest = int(np.argmin(radii))
    points = _sample_cap(centers[smallest], float(radii[smallest] * limit), REGION_SAMPLES)
    ratio = _worst_ratio(points, centers, radii)
    kept = points[ratio <= limit]
    if len(kept) == 0:
        return None
    if len(kept) < MIN_REGION_POINTS:
        # Small region: resample over its bounding cap, padded by the first pass's spacing.
        mean = kept.mean(axis=0)
        mean /= np.linalg.norm(mean)
        spacing = math.sqrt(4.0 * math.pi / REGION_SAMPLES) * radii[smallest] * limit
        extent = float(np.max(angle_rad(kept, mean[None, :]))) + spacing
        points = _sample_cap(mean, extent, REGION_SAMPLES)
        ratio = _worst_ratio(points, centers, radii)
        inside = ratio <= limit
        if np.count_nonzero(inside) > len(kept):
            kept = points[inside]
    return kept, ratio


def _touching_factor(centers: Float64Array, radii: Float64Array) -> float:
    """Smallest common factor by which the caps must grow to share a point (searched)."""
    points = _sample_cap(np.array([0.0, 0.0, 1.0]), math.pi, SEARCH_SAMPLES)
    ratio = _worst_ratio(points, centers, radii)
    best = points[int(np.argmin(ratio))]
    width = math.sqrt(4.0 * math.pi / SEARCH_SAMPLES) * 2.0
    for _ in range(4):  # local refinement around the best candidate, shrinking each round
        points = np.vstack([best[None, :], _sample_cap(best, width, 2000)])
        ratio = _worst_ratio(points, centers, radii)
        best = points[int(np.argmin(ratio))]
        width /= 4.0
    return float(np.min(ratio))


def _cap_estimate(centers: Float64Array, radii_km: Float64Array, method: str) -> Estimate:
    radii = np.clip(np.maximum(radii_km, MIN_CAP_RADIUS_KM) / EARTH_MEAN_RADIUS_KM, 0.0, math.pi)
    factor = 1.0
    region = _region(centers, radii, 1.0)
    if region is None:
        factor = _touching_factor(centers, radii) * (1.0 + GROWN_SLACK)
        region = _region(centers, radii, factor)
        method += "-grown"
    if region is None:  # the search missed the touching point: should not happen, stay honest
        smallest = int(np.argmin(radii))
        lat, lon = lat_lon(centers[smallest])
        radius_km = float(radii[smallest] * factor * EARTH_MEAN_RADIUS_KM)
        return Estimate(float(lat), float(lon), radius_km, method + "-smallest-cap", factor)
    kept, _ = region
    mean = kept.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    # A region symmetric about the Earth's centre has no meaningful centroid.
    mean = centers[int(np.argmin(radii))] if norm < 1e-9 else mean / norm
    lat, lon = lat_lon(mean)
    radius_km = float(np.max(angle_rad(kept, mean[None, :]))) * EARTH_MEAN_RADIUS_KM
    return Estimate(float(lat), float(lon), radius_km, method, factor)


def estimate_position(
    measurements: Sequence[MeasurementLike], bestlines: Mapping[str, Bestline]
) -> Estimate:
    """CBG estimate from bestline caps; see the module docstring for the fallbacks."""
    rtts = _effective_rtts(measurements)
    centers = _centers(measurements)
    radii_km = np.empty(len(measurements))
    baseline_caps = 0
    for i, (m, rtt) in enumerate(zip(measurements, rtts, strict=True)):
        line = bestlines.get(m.landmark.id)
        if line is None:
            baseline_caps += 1
            radii_km[i] = max_distance_km(float(rtt), Bound.FIBRE)
        else:
            radii_km[i] = line.max_distance_km(float(rtt))
        radii_km[i] += m.landmark.position_error_km
    estimate = _cap_estimate(centers, radii_km, "cbg-bestline")
    return Estimate(
        estimate.lat,
        estimate.lon,
        estimate.error_radius_km,
        estimate.method,
        estimate.growth_factor,
        baseline_caps,
    )


def cbg_plain_centroid(measurements: Sequence[MeasurementLike]) -> Estimate:
    """Plain CBG baseline: caps of (2/3 c) * rtt / 2 km, centroid of their intersection."""
    rtts = _effective_rtts(measurements)
    radii_km = np.array([max_distance_km(float(r), Bound.FIBRE) for r in rtts])
    radii_km += np.array([m.landmark.position_error_km for m in measurements])
    return _cap_estimate(_centers(measurements), radii_km, "cbg-plain")


def shortest_ping(measurements: Sequence[MeasurementLike]) -> Estimate:
    """Shortest-ping baseline: the position of the landmark with the lowest RTT."""
    rtts = _effective_rtts(measurements)
    best = int(np.argmin(rtts))
    landmark = measurements[best].landmark
    check_lat_lon(landmark.lat, landmark.lon)
    radius_km = max_distance_km(float(rtts[best]), Bound.FIBRE) + landmark.position_error_km
    return Estimate(landmark.lat, landmark.lon, radius_km, "shortest-ping")
