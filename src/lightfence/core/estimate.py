"""Best-guess position of a device from its RTTs: display only, never an input to a verdict.

CBG multilateration (Gueye et al. 2006) with a hedge between calibration and physics. Each
landmark gives two caps: the inner one from its bestline (what its own landmark-to-landmark
calibration says the RTT allows) and the outer one at 2/3 c (what fibre allows). At level
lam in [0, 1] a landmark's cap has radius inner + lam * (outer - inner). The estimate is the
mean of the centroids of the caps' intersection at levels lam0, lam0 + 0.1 and lam0 + 0.2
(LEVEL_STEPS, clipped at 1), where lam0 = 0 when the bestline caps intersect and otherwise the
lowest level at which they do ("cbg-bestline-grown"). Averaging a few levels weights the core of
the region more than its rim; growing towards the fibre caps, rather than by a common factor,
never lets the estimate leave a cap the physics draws. The error radius is the distance from the
estimate to the farthest point of the widest region used.

Regions are sampled: points spread evenly by area over the smallest cap, kept when inside every
cap, and resampled once over the region's own bounding cap when few were kept, so tiny regions
are measured as finely as big ones.

Fallbacks, each visible on the `Estimate`:
- a landmark without a bestline gets the 2/3 c cap as its inner cap too (`baseline_caps`);
- if even the 2/3 c caps miss each other (clock or survey errors), they are grown by the
  smallest common factor that makes them meet, plus GROWN_SLACK ("cbg-plain-grown").

Settings (`EstimateSettings`): the levels averaged, a land prior for wide regions
(core.landprior) and plain 2/3 c caps far from every landmark. DEFAULT_SETTINGS was chosen by the
inner procedure of eval.crossval on the shipped data; the accuracy figure is that of the outer
folds of the nested cross-validation (docs/physics.md, "The estimate"), not an in-sample one.

Plain baselines for the evaluation: `shortest_ping` and `cbg_plain_centroid` (2/3 c caps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from lightfence.core.bestline import (
    BASELINE_SLOPE_MS_PER_KM,
    Bestline,
    BestlineCalibration,
    fit_bestline,
    fit_bestlines,
)
from lightfence.core.landprior import on_land
from lightfence.geo.sphere import (
    Float64Array,
    angle_rad,
    check_lat_lon,
    lat_lon,
    orthogonal_unit,
    unit_vectors,
)
from lightfence.units import EARTH_MEAN_RADIUS_KM, HALF_CIRCUMFERENCE_KM, Bound, max_distance_km

__all__ = [
    "BASELINE_SLOPE_MS_PER_KM",
    "DEFAULT_SETTINGS",
    "Bestline",
    "BestlineCalibration",
    "Estimate",
    "EstimateSettings",
    "LandmarkLike",
    "MeasurementLike",
    "cbg_plain_centroid",
    "estimate_position",
    "fit_bestline",
    "fit_bestlines",
    "shortest_ping",
]

REGION_SAMPLES = 2500
"""Points sampled per cap; a 1,000 km cap gets one per ~1,250 km^2 (about 35 km apart). The
shipped-data median moves by under 0.5 km between 1,500 and 4,000 samples."""
MIN_REGION_POINTS = 200
"""Below this many kept points the region is resampled over its own bounding cap."""
MIN_CAP_RADIUS_KM = 10.0
"""Host coordinates are city-level: an RTT under a bestline's intercept still means 'near', not
'exactly here', so no cap is smaller than this."""
GROWN_SLACK = 0.05
"""Extra growth beyond the touching factor, so a grown region is an area and not a point."""
GROWN_FRACTION_SLACK = 0.02
"""The same for the growth fraction of bestline caps towards the 2/3 c caps."""
LEVEL_STEPS = (0.0, 0.1, 0.2)
"""Levels, above the lowest at which the caps meet, whose region centroids are averaged."""
SEARCH_SAMPLES = 20000
"""Candidates over the whole sphere (about 160 km apart) when even 2/3 c caps do not meet."""
_GOLDEN_ANGLE_RAD = math.pi * (3.0 - math.sqrt(5.0))


@dataclass(frozen=True)
class EstimateSettings:
    """The estimator's free choices. The default was chosen by nested cross-validation
    (eval.crossval, docs/physics.md "The estimate"), never by its in-sample error."""

    level_steps: tuple[float, ...] = LEVEL_STEPS
    """Levels, above the lowest at which the bestline caps meet, whose centroids are averaged."""
    land_above_km: float | None = None
    """Keep only a region's land points when its smallest cap is at least this wide (km);
    None: never (core.landprior)."""
    plain_above_ms: float | None = None
    """Use the plain 2/3 c caps instead of bestlines when the shortest RTT is above this (ms):
    far from every landmark, a landmark's own calibration says little; None: never."""
    shortest_below_ms: float | None = None
    """Answer with the shortest-ping landmark's position when the shortest RTT is below this
    (ms): a landmark in the same city; None: never."""

    def __post_init__(self) -> None:
        if not self.level_steps or any(not 0.0 <= x <= 1.0 for x in self.level_steps):
            raise ValueError("level_steps must be one or more levels in [0, 1]")
        for name in ("land_above_km", "plain_above_ms", "shortest_below_ms"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be None or a finite number >= 0")

    def describe(self) -> str:
        parts = [f"levels={','.join(f'{x:g}' for x in self.level_steps)}"]
        if self.land_above_km is not None:
            parts.append(f"land>={self.land_above_km:g}km")
        if self.plain_above_ms is not None:
            parts.append(f"plain>{self.plain_above_ms:g}ms")
        if self.shortest_below_ms is not None:
            parts.append(f"shortest<{self.shortest_below_ms:g}ms")
        return " ".join(parts)


DEFAULT_SETTINGS = EstimateSettings(
    level_steps=LEVEL_STEPS, land_above_km=2000.0, plain_above_ms=40.0
)
"""What the inner procedure of eval.crossval (leave one site out, candidates eval.crossval
.CANDIDATES) chooses on all 149 shipped targets. Its out-of-sample accuracy is the nested CV's
outer-fold figure in docs/physics.md; the plain EstimateSettings() is CBG-bestline alone."""


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


LOCATES_NOTHING_KM = HALF_CIRCUMFERENCE_KM / 2.0
"""A radius past a quarter of the circumference (about 10,000 km) covers most of a hemisphere
or more: stated in words, not as a number that reads like a location."""


def distance_words(km: float) -> str:
    """A distance bound for people: the number while it places something, words past that.

    "within 51,579 km" is true but reads like information; past half the circumference the
    bound excludes nothing on Earth, and past a quarter it covers most of the globe.
    """
    if not math.isfinite(km) or km >= HALF_CIRCUMFERENCE_KM:
        return "anywhere on Earth (the bound exceeds half the circumference)"
    if km >= LOCATES_NOTHING_KM:
        return f"{km:,.0f} km: most of the globe"
    return f"{km:,.1f} km"


@dataclass(frozen=True)
class Estimate:
    """A best guess, labelled as such: a point and how far the truth may plausibly be."""

    lat: float
    lon: float
    error_radius_km: float
    method: str
    """cbg-bestline, cbg-bestline-grown, cbg-plain, cbg-plain-grown or shortest-ping."""
    growth_fraction: float = 0.0
    """How far the bestline caps were grown towards the 2/3 c caps before they met (0 to 1)."""
    growth_factor: float = 1.0
    """Common factor the 2/3 c caps were grown by when even they did not meet (else 1.0)."""
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


def _required_level(
    points: Float64Array, centers: Float64Array, inner: Float64Array, outer: Float64Array
) -> Float64Array:
    """Per point, the smallest level at which it lies in every cap of radius inner + level *
    (outer - inner); inner = 0 makes the level a plain growth factor of the outer caps."""
    # arccos of a dot product (error about 1e-8 rad, 0.1 km) instead of angle_rad: this runs on
    # millions of pairs per estimate, and a display estimate does not need nanometres.
    angles = np.arccos(np.clip(points @ centers.T, -1.0, 1.0))
    # Where inner == outer the cap never grows: a point outside it needs an unreachable level.
    span = np.maximum(outer - inner, 1e-12)
    level = (angles - inner[None, :]) / span[None, :]
    return np.asarray(np.max(level, axis=1), dtype=np.float64)


def _inside(points: Float64Array, centers: Float64Array, radii: Float64Array) -> Float64Array:
    """Points inside every cap; a dot-product test, cheaper than angles for the many samples."""
    mask = np.all(points @ centers.T >= np.cos(radii)[None, :], axis=1)
    return np.asarray(points[mask], dtype=np.float64)


def _land_only(points: Float64Array) -> Float64Array:
    """The points on land, or all of them when none is (a region wholly at sea)."""
    if len(points) == 0:
        return points
    lat, lon = lat_lon(points)
    mask = on_land(lat, lon)
    return np.asarray(points[mask], dtype=np.float64) if mask.any() else points


def _region(
    centers: Float64Array,
    inner: Float64Array,
    outer: Float64Array,
    level: float,
    near: Float64Array | None = None,
    land_above_rad: float | None = None,
) -> Float64Array | None:
    """Sampled points of the intersection of the caps at `level`; None when none was found.

    `near`, a point known to be in the region, rescues slivers thinner than the sample spacing.
    With `land_above_rad`, a region whose smallest cap is at least that wide keeps only its land
    points (when it has any).
    """
    radii = np.clip(inner + level * (outer - inner), 0.0, math.pi)
    smallest = int(np.argmin(radii))
    spacing = math.sqrt(math.pi / REGION_SAMPLES) * float(radii[smallest])
    points = _sample_cap(centers[smallest], float(radii[smallest]), REGION_SAMPLES)
    kept = _inside(points, centers, radii)
    if len(kept) == 0 and near is not None:
        around = np.vstack([near[None, :], _sample_cap(near, 2.0 * spacing, REGION_SAMPLES)])
        kept = _inside(around, centers, radii)
        if len(kept) == 0:
            kept = near[None, :]
    if len(kept) == 0:
        return None
    if len(kept) < MIN_REGION_POINTS:
        # Small region: resample over its bounding cap, padded by the first pass's spacing.
        mean = kept.mean(axis=0)
        mean /= np.linalg.norm(mean)
        extent = float(np.max(angle_rad(kept, mean[None, :]))) + spacing
        inside = _inside(_sample_cap(mean, extent, REGION_SAMPLES), centers, radii)
        if len(inside) > len(kept):
            kept = inside
    if land_above_rad is not None and float(radii[smallest]) >= land_above_rad:
        kept = _land_only(kept)
    return kept


def _lowest_level(
    centers: Float64Array, inner: Float64Array, outer: Float64Array, within: int | None = None
) -> tuple[float, Float64Array]:
    """Smallest level at which the caps share a point, and that point: searched over the whole
    sphere, or over cap `within`'s outer cap when only levels up to 1 matter."""
    if within is None:
        points = _sample_cap(np.array([0.0, 0.0, 1.0]), math.pi, SEARCH_SAMPLES)
        width = math.sqrt(4.0 * math.pi / SEARCH_SAMPLES) * 2.0
    else:
        points = _sample_cap(centers[within], float(outer[within]), REGION_SAMPLES)
        width = math.sqrt(math.pi / REGION_SAMPLES) * float(outer[within]) * 2.0
    level = _required_level(points, centers, inner, outer)
    best = points[int(np.argmin(level))]
    for _ in range(4):  # local refinement around the best candidate, shrinking each round
        points = np.vstack([best[None, :], _sample_cap(best, width, 1000)])
        level = _required_level(points, centers, inner, outer)
        best = points[int(np.argmin(level))]
        width /= 4.0
    return float(np.min(level)), best


def _normalised_mean(vectors: Float64Array, fallback: Float64Array) -> Float64Array:
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    # A point set symmetric about the Earth's centre has no meaningful centroid.
    return fallback if norm < 1e-9 else np.asarray(mean / norm, dtype=np.float64)


def _layered_estimate(
    centers: Float64Array,
    inner: Float64Array,
    outer: Float64Array,
    levels: Sequence[float],
    max_level: float,
    near: Float64Array | None = None,
    land_above_rad: float | None = None,
) -> tuple[Float64Array, float] | None:
    """Mean of the region centroids at each level (clipped to max_level), and the distance from
    it to the farthest point of the largest region; None when no level's region was found."""
    centroids: list[Float64Array] = []
    widest: Float64Array | None = None
    for level in levels:
        kept = _region(centers, inner, outer, min(level, max_level), near, land_above_rad)
        if kept is None:
            continue
        centroids.append(_normalised_mean(kept, centers[int(np.argmin(outer))]))
        widest = kept
    if widest is None:
        return None
    point = _normalised_mean(np.array(centroids), centroids[-1])
    radius_rad = float(np.max(angle_rad(widest, point[None, :])))
    return point, radius_rad * EARTH_MEAN_RADIUS_KM


def _to_rad(radii_km: Float64Array) -> Float64Array:
    return np.clip(np.maximum(radii_km, MIN_CAP_RADIUS_KM) / EARTH_MEAN_RADIUS_KM, 0.0, math.pi)


def _land_rad(settings: EstimateSettings) -> float | None:
    if settings.land_above_km is None:
        return None
    return settings.land_above_km / EARTH_MEAN_RADIUS_KM


def _plain_estimate(
    centers: Float64Array,
    plain_km: Float64Array,
    method: str,
    land_above_rad: float | None = None,
) -> Estimate:
    """Centroid of the 2/3 c caps' intersection, grown by a common factor when empty."""
    outer = _to_rad(plain_km)
    inner = np.zeros_like(outer)
    factor = 1.0
    found = _layered_estimate(centers, inner, outer, [1.0], 1.0, None, land_above_rad)
    if found is None:
        touching, best = _lowest_level(centers, inner, outer)
        factor = touching * (1.0 + GROWN_SLACK)
        found = _layered_estimate(
            centers, inner, outer, [factor], factor, near=best, land_above_rad=land_above_rad
        )
        method += "-grown"
        if found is None:  # unreachable: `best` is in the region at this factor
            found = best, float(np.min(outer)) * factor * EARTH_MEAN_RADIUS_KM
    point, radius_km = found
    lat, lon = lat_lon(point)
    return Estimate(float(lat), float(lon), radius_km, method, growth_factor=factor)


def estimate_position(
    measurements: Sequence[MeasurementLike],
    bestlines: Mapping[str, Bestline],
    settings: EstimateSettings = DEFAULT_SETTINGS,
) -> Estimate:
    """CBG estimate from bestline caps; see the module docstring for the method and fallbacks."""
    rtts = _effective_rtts(measurements)
    centers = _centers(measurements)
    position_error_km = np.array([m.landmark.position_error_km for m in measurements])
    plain_km = np.array([max_distance_km(float(r), Bound.FIBRE) for r in rtts])
    land = _land_rad(settings)
    shortest_ms = float(np.min(rtts))
    if settings.shortest_below_ms is not None and shortest_ms < settings.shortest_below_ms:
        return shortest_ping(measurements)
    if settings.plain_above_ms is not None and shortest_ms > settings.plain_above_ms:
        return _plain_estimate(centers, plain_km + position_error_km, "cbg-plain", land)
    bestline_km = plain_km.copy()
    baseline_caps = 0
    for i, (m, rtt) in enumerate(zip(measurements, rtts, strict=True)):
        line = bestlines.get(m.landmark.id)
        if line is None:
            baseline_caps += 1
        else:
            bestline_km[i] = min(line.max_distance_km(float(rtt)), plain_km[i])
    inner = _to_rad(bestline_km + position_error_km)
    outer = _to_rad(plain_km + position_error_km)
    lowest = 0.0
    method = "cbg-bestline"
    if _region(centers, inner, outer, 0.0) is None:
        # Every level up to 1 lies inside each 2/3 c cap: search only the smallest one.
        lowest, near = _lowest_level(centers, inner, outer, within=int(np.argmin(outer)))
        lowest = min(lowest + GROWN_FRACTION_SLACK, 1.0) if lowest <= 1.0 else lowest
        method = "cbg-bestline-grown"
    else:
        near = None
    levels = [lowest + step for step in settings.level_steps]
    found = (
        _layered_estimate(centers, inner, outer, levels, 1.0, near, land) if lowest <= 1.0 else None
    )
    if found is None:  # even the 2/3 c caps miss each other: grow those instead
        plain = _plain_estimate(centers, plain_km + position_error_km, "cbg-plain", land)
        return replace(plain, baseline_caps=baseline_caps)
    point, radius_km = found
    lat, lon = lat_lon(point)
    return Estimate(
        float(lat),
        float(lon),
        radius_km,
        method,
        growth_fraction=lowest,
        baseline_caps=baseline_caps,
    )


def cbg_plain_centroid(measurements: Sequence[MeasurementLike]) -> Estimate:
    """Plain CBG baseline: caps of (2/3 c) * rtt / 2 km, centroid of their intersection."""
    rtts = _effective_rtts(measurements)
    plain_km = np.array([max_distance_km(float(r), Bound.FIBRE) for r in rtts])
    plain_km += np.array([m.landmark.position_error_km for m in measurements])
    return _plain_estimate(_centers(measurements), plain_km, "cbg-plain")


def shortest_ping(measurements: Sequence[MeasurementLike]) -> Estimate:
    """Shortest-ping baseline: the position of the landmark with the lowest RTT."""
    rtts = _effective_rtts(measurements)
    best = int(np.argmin(rtts))
    landmark = measurements[best].landmark
    check_lat_lon(landmark.lat, landmark.lon)
    radius_km = max_distance_km(float(rtts[best]), Bound.FIBRE) + landmark.position_error_km
    return Estimate(landmark.lat, landmark.lon, radius_km, "shortest-ping")
