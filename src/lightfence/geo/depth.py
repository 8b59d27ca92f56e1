"""Depth in a set of caps (how many caps contain a point) and the robust region F_f.

F_f, for a device with n caps and a tolerance of f lying landmarks, is the set of points inside
at least n - f of the caps: the union of the intersections of every n - f of them. It contains
the true position whenever at most f caps are false. See docs/robust.md.

Exactness rests on the same candidate points as F (`caps.candidate_points`): every connected
component of {depth >= d} meets a candidate, for every d. A component that is not the whole
sphere has a boundary, and the depth only changes across circles, so that boundary is made of
circle arcs. An arc that ends ends where a second circle meets it: a pairwise crossing. A
boundary curve that is a whole circle holds the circle's fixed point. A component without a
boundary is the whole sphere and holds every centre. So the largest depth over the candidates is
the largest depth anywhere, and F_f is non-empty if and only if a candidate has depth >= n - f.
Cost: k (k + 1) candidates times k cap tests, O(k^3) per device, with no subset enumeration.

Caps are never merged or dropped here: a redundant cap still adds to the depth. Callers merge
the caps of one landmark first (see core.robust), so that f counts landmarks, not records.
Tolerances are those of `caps.witnesses`: candidates of the caps grown by half of
WITNESS_TOLERANCE_RAD, counted inside a cap when within WITNESS_TOLERANCE_RAD of it, so rounding
can only raise a depth.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lightfence.geo.caps import WHOLE_SPHERE_RAD, candidate_points, generating, tolerant
from lightfence.geo.sphere import Float64Array, orthogonal_unit


def inside_caps(
    points: Float64Array, centres: Float64Array, radius_rad: Float64Array
) -> NDArray[np.bool_]:
    """(g, q, k) mask: point q of device g lies in cap k, radii as given.

    The same test as `caps.inside_all`, before the reduction over caps.
    """
    cos_limit = np.where(radius_rad >= WHOLE_SPHERE_RAD, -np.inf, np.cos(radius_rad))
    dots = np.einsum("gqi,gki->gqk", points, centres)
    return np.asarray(dots >= cos_limit[:, None, :] - 1e-15)


def deep_candidates(
    centres: Float64Array, radius_rad: Float64Array
) -> tuple[Float64Array, NDArray[np.bool_]]:
    """Candidates (g, q, 3) of each device and their cap membership (g, q, k).

    As `caps.witnesses`: candidates of the caps grown by half the witness tolerance, tested
    against the caps grown by all of it. Padding caps (whole sphere) contain every candidate.
    """
    cands = candidate_points(centres, generating(radius_rad))
    return cands, inside_caps(cands, centres, tolerant(radius_rad))


def max_depth(centres: Float64Array, radius_rad: Float64Array) -> NDArray[np.int64]:
    """(g,) the largest number of caps of each device that share a point (padding included)."""
    _, member = deep_candidates(centres, radius_rad)
    return np.asarray(member.sum(axis=2).max(axis=1), dtype=np.int64)


def robust_witnesses(
    centres: Float64Array, radius_rad: Float64Array, need: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], Float64Array, NDArray[np.bool_]]:
    """Non-emptiness of {depth >= need[g]} per device, with its witness points.

    Returns (nonempty (g,), candidates (g, q, 3), deep (g, q)); with need = k it is exactly
    `caps.witnesses` on the same caps. Every component of the set holds a deep candidate.
    """
    cands, member = deep_candidates(centres, radius_rad)
    deep = member.sum(axis=2) >= np.asarray(need)[:, None]
    return np.asarray(deep.any(axis=1)), cands, np.asarray(deep)


def drop_covering(
    centres: Float64Array, radius_rad: Float64Array, liars: int
) -> tuple[Float64Array, Float64Array]:
    """One device's caps (k, 3), (k,) without those that contain more than `liars` others;
    {depth >= k' - liars} over the k' caps kept equals {depth >= k - liars} over all k.

    Why: let A contain caps B_1 .. B_{f+1}. A point missing at most f caps lies in some B_i, so
    in A. Dropping A: a point missing at most f of the rest is either in A (then it missed the
    same caps before) or outside A and so outside every B_i, f + 1 misses: impossible. Caps are
    dropped largest first, and a cap only contains smaller ones, which are all still there when
    it is judged, so every cap can be judged at once. With f = 0 this is caps.drop_redundant's
    rule. The containment test is the same, with the same margin. Dropping any cap (f kept)
    can only enlarge the set, so an error in that test errs on the safe side.
    """
    if len(radius_rad) <= liars + 1:
        return centres, radius_rad
    sep = np.arccos(np.clip(centres @ centres.T, -1.0, 1.0))
    # contains[a, b]: cap a contains cap b.
    contains = sep + radius_rad[None, :] <= radius_rad[:, None] - 1e-12
    np.fill_diagonal(contains, False)
    keep = contains.sum(axis=1) <= liars
    return centres[keep], radius_rad[keep]


def least_removal(centres: Float64Array, radius_rad: Float64Array) -> tuple[int, NDArray[np.bool_]]:
    """For one device (k, 3), (k,): the fewest caps whose removal leaves a common point, and
    every cap that is in some such smallest set (k,).

    Removing the caps that miss a deepest point leaves that point in all the others, and no
    smaller removal can work, since a point in more caps would be deeper. A cap is named if it
    misses at least one deepest candidate: with two disjoint caps, both are named.
    """
    _, member = deep_candidates(centres[None], radius_rad[None])
    depth = member[0].sum(axis=1)
    best = int(depth.max())
    named = np.asarray((~member[0][depth == best]).any(axis=0))
    return len(radius_rad) - best, named


def any_point_near(
    centres: Float64Array,
    radius_rad: Float64Array,
    points: Float64Array,
    need: int,
    limit_rad: float,
) -> bool:
    """Whether some point (m, 3) lies within `limit_rad` of {depth >= need} of one device's caps
    (k, 3), (k,): of F itself when need = k.

    This is "F grown by a margin meets the point", not "the point is in every cap grown by the
    margin": for a thin F the second is far larger (two nearly tangent caps grown by 10 km meet
    along a lens over a hundred km long). The nearest point of the set to a point v outside it
    lies on its boundary, made of circle arcs: inside an arc, where distance along the circle
    has its only minimum, the projection of v onto that circle; or at an arc's end, a crossing.
    So the candidates are v, its projections onto every circle, and the set's own candidates
    (`candidate_points`), each kept only if deep enough (tolerances as `deep_candidates`, so a
    distance can only come out short, the safe side).
    """
    if len(points) == 0:
        return False
    k = len(radius_rad)
    if need <= 0:
        return True
    cands, member = deep_candidates(centres[None], radius_rad[None])
    own = cands[0][member[0].sum(axis=1) >= need]
    lim = np.cos(min(limit_rad, np.pi))
    if len(own) and bool((points @ own.T >= lim).any()):
        return True
    # Projections of each point onto each circle, plus the point itself: (m, k + 1, 3).
    dots = points @ centres.T  # (m, k)
    toward = points[:, None, :] - dots[..., None] * centres[None, :, :]
    norm = np.linalg.norm(toward, axis=-1, keepdims=True)
    fixed = orthogonal_unit(centres)
    toward = np.where(norm > 1e-12, toward / np.where(norm > 0, norm, 1.0), fixed[None])
    gen = generating(radius_rad)
    proj = np.cos(gen)[None, :, None] * centres[None] + np.sin(gen)[None, :, None] * toward
    pts = np.concatenate([points[:, None, :], proj], axis=1)
    pts = pts / np.linalg.norm(pts, axis=-1, keepdims=True)
    deep = (
        inside_caps(
            pts,
            np.broadcast_to(centres, (len(points), k, 3)),
            tolerant(np.broadcast_to(radius_rad, (len(points), k))),
        ).sum(axis=2)
        >= need
    )
    close = np.einsum("mqi,mi->mq", pts, points) >= lim
    return bool((deep & close).any())


def farthest_rad(
    centres: Float64Array, radius_rad: Float64Array, point: Float64Array, need: int
) -> float:
    """An upper bound on the largest angle from `point` (3,) to {depth >= need} of one device's
    caps (k, 3), (k,): exact up to the witness tolerance.

    The distance from a point has one interior maximum, at its antipode; on a circle, it peaks
    at the circle's far point from `point`; on an arc that misses that, at an arc's end (a
    crossing). So the candidates are the antipode, every circle's far point, and the set's own
    candidates, each kept only if deep enough (tolerances as `deep_candidates`).
    """
    if need <= 0:
        return float(np.pi)
    cands, member = deep_candidates(centres[None], radius_rad[None])
    pts = [cands[0][member[0].sum(axis=1) >= need]]
    away = -(point - (centres @ point)[:, None] * centres)
    norm = np.linalg.norm(away, axis=-1, keepdims=True)
    away = np.where(norm > 1e-12, away / np.where(norm > 0, norm, 1.0), orthogonal_unit(centres))
    gen = generating(radius_rad)
    far = np.cos(gen)[:, None] * centres + np.sin(gen)[:, None] * away
    extra = np.concatenate([-point[None], far], axis=0)
    extra = extra / np.linalg.norm(extra, axis=-1, keepdims=True)
    deep = inside_caps(extra[None], centres[None], tolerant(radius_rad)[None])[0].sum(axis=1)
    pts.append(extra[deep >= need])
    every = np.concatenate(pts, axis=0)
    if len(every) == 0:
        return float(np.pi)  # no witness of a set known non-empty: rounding, so doubt
    cross = np.linalg.norm(np.cross(every, point[None]), axis=-1)
    return float(np.arctan2(cross, every @ point).max())
