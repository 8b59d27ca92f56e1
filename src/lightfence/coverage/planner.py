"""Where should the next landmarks stand? Greedy placement by GPUs made verifiable.

At each step every candidate position is tried as one more landmark; the one that turns the most
GPUs (sites weighted by their GPU count) from not verifiable to VERIFIED, at the modelled network
quantile, is added, and the step's marginal gain is recorded. Coverage of a set of sites is
monotone in the landmark set (a cap more can only shrink F), so greedy is the usual (1 - 1/e)
approximation for this kind of covering problem, up to the K-nearest pruning of the model.

A candidate can only change a site's K nearest landmarks if it is nearer than the site's current
K-th nearest, so only those (candidate, site) pairs go to the verdict engine; all of them in one
batch per step. When no single candidate helps (a site whose F needs two new caps to close),
pairs of candidates are tried and the best pair is added as two steps (the first may show a gain
of 0).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lightfence.core.policy import Policy
from lightfence.coverage.inputs import Places
from lightfence.coverage.model import (
    DEFAULT_K,
    DEFAULT_QUANTILE,
    Neighbours,
    nearest_landmarks,
    quantile_rtt_ms,
    verified,
)
from lightfence.geo.sphere import great_circle_km


@dataclass(frozen=True)
class Step:
    candidate: str
    lat: float
    lon: float
    gain_gpus: float
    gain_sites: int
    verified_gpus: float
    """GPUs verifiable once this landmark is added."""


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    before: NDArray[np.bool_]
    """(sites,) verifiable with the given landmarks."""
    after: NDArray[np.bool_]
    added: Places
    total_gpus: float
    stopped_early: bool
    """No remaining candidate (or pair) made another site verifiable."""


def site_verified(
    sites: Places, landmarks: Places, policy: Policy, quantile: float, k: int
) -> NDArray[np.bool_]:
    nb = nearest_landmarks(sites.lat, sites.lon, landmarks, k)
    return verified(landmarks, nb, quantile_rtt_ms(nb, quantile), policy, sites.country)


def _gains(
    sites: Places,
    todo: NDArray[np.int64],
    landmarks: Places,
    candidates: Places,
    policy: Policy,
    quantile: float,
    k: int,
    group: int = 1,
) -> dict[tuple[int, ...], float]:
    """GPUs that each set of `group` candidates, added together, would make verifiable among the
    sites `todo`. Only sets whose every member is nearer a site than its K-th landmark can change
    that site's modelled verdict, so only those are tried."""
    if len(todo) == 0 or len(candidates) == 0:
        return {}
    nb = nearest_landmarks(sites.lat[todo], sites.lon[todo], landmarks, k)
    kth = np.where(nb.valid.all(axis=1), nb.dist_km[:, -1], np.inf)
    to_cand = great_circle_km(
        sites.lat[todo][:, None],
        sites.lon[todo][:, None],
        candidates.lat[None, :],
        candidates.lon[None, :],
    )
    pair_site: list[int] = []
    pair_set: list[tuple[int, ...]] = []
    for j in range(len(todo)):
        near = np.flatnonzero(to_cand[j] < kth[j]).tolist()
        for combo in itertools.combinations(near, group):
            pair_site.append(j)
            pair_set.append(combo)
    if not pair_site:
        return {}
    site_j = np.asarray(pair_site, dtype=np.int64)
    sets = np.asarray(pair_set, dtype=np.int64).reshape(len(pair_set), group)
    # Each trial: the site's neighbours plus the set, nearest K kept.
    idx = np.concatenate([nb.idx[site_j], len(landmarks) + sets], axis=1)
    dist = np.concatenate([nb.dist_km[site_j], to_cand[site_j[:, None], sets]], axis=1)
    order = np.argsort(dist, axis=1)[:, : nb.idx.shape[1]]
    trial = Neighbours(
        idx=np.take_along_axis(idx, order, axis=1), dist_km=np.take_along_axis(dist, order, axis=1)
    )
    country = [sites.country[todo[j]] for j in site_j.tolist()]
    both = landmarks.concat(candidates)
    ok = verified(both, trial, quantile_rtt_ms(trial, quantile), policy, country)
    gains: dict[tuple[int, ...], float] = {}
    for j, combo in zip(site_j[ok].tolist(), sets[ok].tolist(), strict=True):
        key = tuple(combo)
        gains[key] = gains.get(key, 0.0) + float(sites.gpus[todo[j]])
    return gains


def plan(
    sites: Places,
    landmarks: Places,
    candidates: Places,
    policy: Policy,
    budget: int,
    quantile: float = DEFAULT_QUANTILE,
    k: int = DEFAULT_K,
    on_step: Callable[[Step], None] | None = None,
) -> Plan:
    """Choose up to `budget` candidates, greedily by marginal GPUs made verifiable."""
    if budget < 0:
        raise ValueError("budget must be >= 0")
    before = site_verified(sites, landmarks, policy, quantile, k)
    now = before.copy()
    current = landmarks
    left = np.arange(len(candidates), dtype=np.int64)
    steps: list[Step] = []
    chosen: list[int] = []
    stopped = False
    while len(chosen) < budget:
        todo = np.flatnonzero(~now).astype(np.int64)
        pool = candidates.take(left)
        gains = _gains(sites, todo, current, pool, policy, quantile, k)
        if not gains and budget - len(chosen) >= 2:
            # No single landmark helps: a site may need two new caps to close F.
            gains = _gains(sites, todo, current, pool, policy, quantile, k, group=2)
        if not gains:
            stopped = True
            break
        best = max(gains, key=lambda key: (gains[key], [-i for i in key]))
        for member in best:
            pick = int(left[member])
            chosen.append(pick)
            current = current.concat(candidates.take([pick]))
            was = now.copy()
            now = site_verified(sites, current, policy, quantile, k)
            step = Step(
                candidate=candidates.names[pick],
                lat=float(candidates.lat[pick]),
                lon=float(candidates.lon[pick]),
                gain_gpus=float(sites.gpus[now & ~was].sum()),
                gain_sites=int((now & ~was).sum()),
                verified_gpus=float(sites.gpus[now].sum()),
            )
            steps.append(step)
            if on_step:
                on_step(step)
        left = np.delete(left, list(best))
    return Plan(
        steps=tuple(steps),
        before=before,
        after=now,
        added=candidates.take(chosen),
        total_gpus=float(sites.gpus.sum()),
        stopped_early=stopped,
    )
