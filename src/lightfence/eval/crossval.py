"""Nested cross-validation of the display estimate's settings: errors reported out of sample.

Sites: targets within SAME_SITE_KM of each other (union-find) form one site, and a site is held
out whole: a target is never calibrated, measured or scored with a near-duplicate of itself on
the other side.

Outer folds: the sites are dealt into OUTER_FOLDS folds. For each outer fold, the setting is
chosen on the other targets alone, and that one setting estimates the fold's targets. The figure
`lightfence eval` reports is the error on outer folds only.

Inner folds: each site of the other targets in turn (leave-one-site-out), with the outer fold
removed from everything (not a landmark, not in any calibration row); every candidate estimates
the held-out site's targets, and the candidate with the best pooled score is chosen.

Held out means: the site's hosts are not landmarks for it and are in no calibration row
(bestlines are fitted on landmark-to-landmark RTTs, so they are training data too). That is how
the project owner's held-out hosts stand to the shipped data. A landmark-only host near a target
(a RIPE anchor in its city) stays a landmark, as it would in use. Plain CBG, the baseline, sees
the same landmarks as the estimate.

Selection criterion: median error / plain CBG's median + p90 / plain CBG's p90 over the pooled
inner errors (the issue's two targets, each relative to the baseline on the same targets).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lightfence.core.bestline import Bestline, BestlineCalibration
from lightfence.core.estimate import (
    DEFAULT_SETTINGS,
    Estimate,
    EstimateSettings,
    cbg_plain_centroid,
    estimate_position,
)
from lightfence.core.measurement import Measurement
from lightfence.geo.sphere import great_circle_km

SAME_SITE_KM = 50.0
"""Hosts this close are one site (one city's servers): never on both sides of a fold."""
OUTER_FOLDS = 5
FOLD_SEED = 20261206
"""Fixed seed of the group-to-fold shuffle, so a run is reproducible."""

_WIDER = (0.0, 0.2, 0.4)
CANDIDATES: tuple[EstimateSettings, ...] = (
    EstimateSettings(level_steps=(0.0, 0.1, 0.2)),
    EstimateSettings(level_steps=_WIDER),
    EstimateSettings(level_steps=_WIDER, land_above_km=2000.0),
    EstimateSettings(level_steps=_WIDER, plain_above_ms=20.0, land_above_km=2000.0),
    EstimateSettings(level_steps=(0.0, 0.1, 0.2), plain_above_ms=30.0, land_above_km=2000.0),
    EstimateSettings(level_steps=_WIDER, plain_above_ms=30.0, land_above_km=2000.0),
    EstimateSettings(level_steps=(0.0, 0.1, 0.2), plain_above_ms=40.0, land_above_km=2000.0),
    EstimateSettings(level_steps=_WIDER, plain_above_ms=40.0, land_above_km=2000.0),
)
"""Candidates the CV chooses among: CBG's centroid averaged over levels up to 0.2 (the estimate
before issue 21) or 0.4 of the way to the fibre caps; a land prior for regions whose smallest cap
is at least 2,000 km wide (Octant's geographic constraints); and plain 2/3 c caps instead of
bestlines when even the nearest landmark is 20, 30 or 40 ms away (a landmark's calibration is
fitted mostly on nearer pairs and says little that far out). Ruled out on the way by quick
in-sample leave-one-out runs (docs/physics.md): a land prior for every region, snapping to the
nearest data-centre city or landmark, a Spotter-style likelihood over all landmarks,
GeoPing-style nearest neighbours in delay space, and a shortest-ping answer next to a landmark (a
no-op: below 2 ms every method lands in the same city)."""

Progress = Callable[[int, int], None]
Rows = list[tuple[str, str, float, float]]


def site_groups(ids: Sequence[str], lat: Sequence[float], lon: Sequence[float]) -> list[int]:
    """Group id per point: points within SAME_SITE_KM of each other, transitively, share one."""
    n = len(ids)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    d = great_circle_km(la[:, None], lo[:, None], la[None, :], lo[None, :])
    for i, j in zip(*np.nonzero(np.triu(d <= SAME_SITE_KM, k=1)), strict=True):
        parent[find(int(i))] = find(int(j))
    roots: dict[int, int] = {}
    return [roots.setdefault(find(i), len(roots)) for i in range(n)]


def assign_folds(groups: Sequence[int], k: int, seed: int = FOLD_SEED) -> list[int]:
    """Fold per item, whole groups together: groups shuffled, then each to the smallest fold."""
    ids = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    size = dict.fromkeys(groups, 0)
    for g in groups:
        size[g] += 1
    fold_of: dict[int, int] = {}
    load = [0] * k
    for g in sorted(order, key=lambda g: -size[g]):  # stable: ties keep the shuffled order
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += size[g]
    return [fold_of[g] for g in groups]


@dataclass(frozen=True)
class Target:
    id: str
    lat: float
    lon: float
    country: str
    measurements: list[Measurement]
    """RTTs from every landmark but the target itself; held-out hosts are dropped per use."""

    def measured_without(self, held_out: Collection[str]) -> list[Measurement]:
        return [m for m in self.measurements if m.landmark.id not in held_out]


class Calibrations:
    """Bestlines fitted without the calibration rows of held-out hosts (cached per context)."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows
        self._fits: dict[frozenset[str], BestlineCalibration | None] = {}

    def _context(self, base: frozenset[str]) -> BestlineCalibration | None:
        if base not in self._fits:
            kept = [r for r in self._rows if r[0] not in base and r[1] not in base]
            self._fits[base] = BestlineCalibration(kept) if kept else None
        return self._fits[base]

    def without(
        self, held_out: Collection[str], base: frozenset[str] = frozenset()
    ) -> dict[str, Bestline]:
        """Bestlines fitted on the rows that involve neither `base` (a context fitted once and
        reused, such as an outer fold) nor `held_out` (a site)."""
        fit = self._context(base)
        return {} if fit is None else fit.bestlines(exclude=set(held_out))


def _error_km(target: Target, est: Estimate) -> float:
    return float(great_circle_km(target.lat, target.lon, est.lat, est.lon))


def score(errors: Sequence[float], cbg: Sequence[float]) -> float:
    """The selection criterion: median and p90 error, each relative to plain CBG's."""
    e = np.asarray(errors, dtype=np.float64)
    b = np.asarray(cbg, dtype=np.float64)
    med = float(np.median(b)) or 1.0
    p90 = float(np.percentile(b, 90)) or 1.0
    return float(np.median(e)) / med + float(np.percentile(e, 90)) / p90


@dataclass(frozen=True)
class FoldChoice:
    fold: int
    targets: int
    chosen: EstimateSettings
    inner_score: float


@dataclass(frozen=True)
class CrossValidation:
    estimates: dict[str, Estimate]
    """Outer-fold estimate per target id."""
    cbg: dict[str, Estimate]
    """Plain CBG per target id, on the same landmarks as its outer-fold estimate."""
    used: dict[str, list[Measurement]]
    """The measurements each outer-fold estimate was made from (its site held out)."""
    folds: list[FoldChoice]
    fold_targets: list[list[str]]
    """Target ids of each outer fold."""
    outer_folds: int
    candidates: int

    def to_json(self) -> dict[str, Any]:
        return {
            "outer_folds": self.outer_folds,
            "inner": "leave-one-site-out over the other folds' targets",
            "candidates": self.candidates,
            "site_km": SAME_SITE_KM,
            "criterion": "median/CBG median + p90/CBG p90",
            "chosen": [
                {
                    "fold": f.fold,
                    "targets": f.targets,
                    "settings": f.chosen.describe(),
                    # None where nothing could be scored (JSON has no NaN).
                    "inner_score": None if math.isnan(f.inner_score) else round(f.inner_score, 4),
                }
                for f in self.folds
            ],
        }


def _sites(targets: Sequence[Target]) -> tuple[list[int], dict[str, frozenset[str]]]:
    groups = site_groups(
        [t.id for t in targets], [t.lat for t in targets], [t.lon for t in targets]
    )
    members: dict[int, set[str]] = {}
    for t, g in zip(targets, groups, strict=True):
        members.setdefault(g, set()).add(t.id)
    return groups, {t.id: frozenset(members[g]) for t, g in zip(targets, groups, strict=True)}


def select(
    train: Sequence[Target],
    calibrations: Calibrations,
    candidates: Sequence[EstimateSettings],
    base: frozenset[str] = frozenset(),
    tick: Callable[[], None] = lambda: None,
) -> tuple[EstimateSettings, float]:
    """The candidate with the best pooled leave-one-site-out score over `train`; the hosts in
    `base` (the outer fold) take no part at all. When nothing could be scored, the display
    default (if it is a candidate, else the first)."""
    fallback = DEFAULT_SETTINGS if DEFAULT_SETTINGS in candidates else candidates[0]
    if len(candidates) == 1:
        return candidates[0], float("nan")
    _, site = _sites(train)
    errors: list[list[float]] = [[] for _ in candidates]
    cbg: list[float] = []
    for t in train:
        held = site[t.id]
        measurements = t.measured_without(held | base)
        tick()
        if not measurements:
            continue
        lines = calibrations.without(held, base)
        for c, settings in enumerate(candidates):
            errors[c].append(_error_km(t, estimate_position(measurements, lines, settings)))
        cbg.append(_error_km(t, cbg_plain_centroid(measurements)))
    if not cbg:
        return fallback, float("nan")
    scores = [score(e, cbg) for e in errors]
    best = int(np.argmin(scores))
    return candidates[best], scores[best]


def nested_cv(
    targets: Sequence[Target],
    calibrations: Calibrations,
    candidates: Sequence[EstimateSettings] = CANDIDATES,
    outer_folds: int = OUTER_FOLDS,
    progress: Progress | None = None,
) -> CrossValidation:
    """Outer-fold estimates of every target, each with a setting chosen without its fold."""
    if not candidates:
        raise ValueError("nested CV needs at least one candidate setting")
    if outer_folds < 2:
        raise ValueError("nested CV needs at least 2 outer folds")
    groups, site = _sites(targets)
    k = min(outer_folds, len(set(groups)))
    folds = assign_folds(groups, k) if k >= 2 else [0] * len(targets)
    total = len(targets) * max(k - 1, 1) + len(targets)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    estimates: dict[str, Estimate] = {}
    plain: dict[str, Estimate] = {}
    used: dict[str, list[Measurement]] = {}
    choices: list[FoldChoice] = []
    members: list[list[str]] = []
    for f in range(k):
        test = [t for t, g in zip(targets, folds, strict=True) if g == f]
        train = [t for t, g in zip(targets, folds, strict=True) if g != f]
        base = frozenset(t.id for t in test)
        chosen, inner = select(train, calibrations, candidates, base, tick)
        for t in test:
            held = site[t.id]
            measurements = t.measured_without(held)
            tick()
            if not measurements:
                continue
            lines = calibrations.without(held)
            estimates[t.id] = estimate_position(measurements, lines, chosen)
            plain[t.id] = cbg_plain_centroid(measurements)
            used[t.id] = measurements
        choices.append(FoldChoice(f, len(test), chosen, inner))
        members.append([t.id for t in test])
    return CrossValidation(estimates, plain, used, choices, members, k, len(candidates))


def main() -> None:
    """Print the setting the inner procedure chooses on all shipped targets (DEFAULT_SETTINGS)."""
    from lightfence.eval.estimates import calibration_rows, target_measurements
    from lightfence.rttdata import load_dataset

    data = load_dataset()
    targets = [
        Target(t, data.hosts[t].lat, data.hosts[t].lon, "", target_measurements(data, t))
        for t in data.target_ids
    ]
    chosen, inner = select(targets, Calibrations(calibration_rows(data)), CANDIDATES)
    print(f"{chosen!r}\ninner score {inner:.4f}")


if __name__ == "__main__":
    main()
