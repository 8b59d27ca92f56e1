"""Verdicts that survive up to f lying landmarks: the robust feasible region F_f.

A landmark that lies can shrink its cap and drag F into the allowed region. F_f, the set of
points inside the caps of at least n - f of the device's n landmarks, contains the true position
whenever at most f of them lie, whatever the liars report. The batch engine (core.batch) tests
F_f instead of F for devices with f > 0; this module holds the parts that differ from F:

* landmarks, not records, are counted: the records of one landmark (same surveyed position)
  are merged into their smallest cap, since one liar controls all of them (`landmark_groups`);
* the precise test of F_f against a region (`robust_precise_may_intersect`);
* which landmarks an INCONSISTENT device's caps cannot reconcile (`irreconcilable_rows`).

The fast path lives in core.batch: F_f misses a region if at least f + 1 caps each miss it, since
a point of F_f lies in all but at most f caps. The algorithm and its cost: docs/robust.md.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lightfence.geo.caps import VERTEX_SLACK_RAD, WHOLE_SPHERE_RAD
from lightfence.geo.conformal import G_MAX_RAD_PER_KM, model_lat_lon
from lightfence.geo.depth import (
    any_point_near,
    drop_covering,
    least_removal,
    robust_witnesses,
)
from lightfence.geo.regions import Region
from lightfence.geo.sphere import Float64Array

# The liar setting is a policy's, defined with it on the ground floor (model.policy).
from lightfence.model.policy import DEFAULT_LIARS as DEFAULT_LIARS
from lightfence.model.policy import Liars as Liars
from lightfence.model.policy import check_liars as check_liars

AUTO_LIARS_MIN_LANDMARKS = 4
"""Under liars='auto', a device measured by at least this many landmarks tolerates one liar."""


def liars_per_device(liars: Liars, landmarks: NDArray[np.int64]) -> NDArray[np.int64]:
    """f for each device, from the setting and its count of distinct landmarks."""
    if liars == "auto":
        return np.where(landmarks >= AUTO_LIARS_MIN_LANDMARKS, 1, 0).astype(np.int64)
    return np.full(len(landmarks), int(liars), dtype=np.int64)


def landmark_groups(
    device_start: NDArray[np.int64], lat_deg: Float64Array, lon_deg: Float64Array
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Group each device's rows by landmark position.

    Returns (group (n,), count (m,)): rows of one device at the same position share a group id
    (ids increase with the device), and count[i] is device i's number of distinct positions.
    Two landmarks at one position are merged too: that only lowers n, which is sound (a liar
    spoils at most its own group), and such a pair cannot check each other anyway.
    """
    counts = np.diff(device_start)
    dev = np.repeat(np.arange(len(counts)), counts)
    lon = np.where(np.abs(lat_deg) >= 90.0, 0.0, (np.asarray(lon_deg) + 180.0) % 360.0 - 180.0)
    order = np.lexsort((lon, lat_deg, dev))
    d, la, lo = dev[order], lat_deg[order], lon[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (d[1:] != d[:-1]) | (la[1:] != la[:-1]) | (lo[1:] != lo[:-1])
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    per_device = np.bincount(d[new], minlength=len(counts)).astype(np.int64)
    return group, per_device


def smallest_per_group(group: NDArray[np.int64], radius_rad: Float64Array) -> NDArray[np.bool_]:
    """(n,) mask keeping, per group, one row of least radius: the group's caps share a centre,
    so their intersection is that one cap."""
    order = np.lexsort((radius_rad, group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    keep = np.zeros(len(order), dtype=bool)
    keep[order[first]] = True
    return keep


def robust_precise_may_intersect(
    centres: Float64Array,
    radius: Float64Array,
    region: Region,
    liars: int,
    *,
    witnesses_done: bool = False,
) -> bool:
    """Whether F_f of the caps (k, 3), (k,), one per landmark, may come within the region's data
    error of `region`. Doubt answers True. With liars = 0 it answers as
    core.batch.precise_may_intersect.

    1. A deep candidate (in all but f caps) inside the region: F_f meets it.
    2. Otherwise F_f comes within the error of the region only if a border point does: then a
       stored vertex lies within the error plus VERTEX_SLACK_RAD of F_f. Only vertices in all
       but f caps grown that much can; their distance to F_f is then found exactly
       (geo.depth.any_point_near). If there is none, each component of F_f is wholly inside or
       wholly outside the region grown by its error, and each holds a deep candidate
       (geo.depth), all of which step 1 found outside.

    `witnesses_done`: step 1 already ran for this device (core.batch's vectorised stage) and
    found F_f non-empty with no witness in the region; go straight to step 2.
    """
    grow = region.data_error_km * G_MAX_RAD_PER_KM
    centres, r = drop_covering(centres, radius, liars)
    need = len(r) - liars
    if need <= 0:
        return True  # F_f is the whole sphere
    if not witnesses_done:
        ok, cands, deep = robust_witnesses(centres[None], r[None], np.array([need]))
        if not bool(ok[0]):
            return True  # F_f contains F, known non-empty: no witness is rounding, so doubt
        lat, lon = model_lat_lon(cands[0][deep[0]])
        if bool(region.contains(lat, lon).any()):
            return True
    limit = grow + VERTEX_SLACK_RAD
    near = region.boundary.vertices_in_most(centres, np.minimum(r + limit, WHOLE_SPHERE_RAD), liars)
    return any_point_near(centres, r, near, need, limit)


def robust_nonempty(centres: Float64Array, radius: Float64Array, liars: int) -> bool:
    """Whether F_f of one device's caps (k, 3), (k,), one per landmark, has a point."""
    centres, radius = drop_covering(centres, radius, liars)
    need = len(radius) - liars
    if need <= 0:
        return True
    ok, _, _ = robust_witnesses(centres[None], radius[None], np.array([need]))
    return bool(ok[0])


def irreconcilable_rows(
    centres: Float64Array, radius: Float64Array, group: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Rows (indices into the arguments) of the landmarks to blame for an empty F.

    `group` (k,) names each row's landmark. The fewest landmarks whose removal leaves the rest a
    common point are found from the depth at the candidates (geo.depth.least_removal); every row
    of every landmark that is in some such smallest set is returned. Empty when F is not empty.
    """
    if len(radius) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = smallest_per_group(group, radius)
    rows = np.flatnonzero(keep)
    removed, named = least_removal(centres[rows], radius[rows])
    if removed == 0:
        return np.zeros(0, dtype=np.int64)
    blamed = np.isin(group, group[rows[named]])
    return np.flatnonzero(blamed).astype(np.int64)
