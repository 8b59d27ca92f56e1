"""Spherical caps and their intersection (the feasible region), vectorised over many devices.

A cap is a centre (unit vector) and an angular radius in [0, pi]. A device's feasible region F
is the intersection of its caps. Arrays are shaped (g, k, ...) for g devices with k caps each;
devices with fewer caps are padded with whole-sphere caps (radius pi), which change nothing.

Emptiness is decided exactly by candidate points (see `candidate_points`): F is non-empty if and
only if one of the candidates lies in every cap, and the candidates meet every connected
component of F. Caps are grown by CAP_TOLERANCE_RAD before any test, so rounding can only make
F look larger, never smaller. Growing F is the safe direction: it can turn a VERIFIED into an
UNVERIFIED but never the reverse.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lightfence.geo.sphere import Float64Array, orthogonal_unit
from lightfence.units import EARTH_MEAN_RADIUS_KM

CAP_TOLERANCE_RAD = 1e-9
"""Growth applied to every cap against floating-point error: about 6 mm on the Earth."""

WHOLE_SPHERE_RAD = np.pi


def pad_caps(
    centres: list[Float64Array], radii: list[Float64Array], k: int
) -> tuple[Float64Array, Float64Array]:
    """Stack ragged per-device caps into (g, k, 3) and (g, k), padding with whole-sphere caps."""
    g = len(centres)
    out_c = np.zeros((g, k, 3))
    out_c[..., 0] = 1.0
    out_r = np.full((g, k), WHOLE_SPHERE_RAD)
    for i, (c, r) in enumerate(zip(centres, radii, strict=True)):
        out_c[i, : len(r)] = c
        out_r[i, : len(r)] = r
    return out_c, out_r


def candidate_points(centres: Float64Array, radius_rad: Float64Array) -> Float64Array:
    """Points that meet every connected component of the intersection of the caps, if any.

    For each device (g, k caps): every cap centre, one fixed point on every cap's circle, and
    the two crossing points of every pair of circles: k * (k + 1) points, shape (g, q, 3).

    Why this suffices: a component of F that is not the whole sphere has a boundary made of
    circle arcs. If an arc ends, it ends at a crossing of two circles, which lies in F. If a
    boundary curve is a whole circle, every point of it lies in F, the fixed one included.
    A component with no boundary is the whole sphere, and contains every centre.
    """
    g, k, _ = centres.shape
    cos_r = np.cos(radius_rad)
    sin_r = np.sin(radius_rad)
    on_circle = cos_r[..., None] * centres + sin_r[..., None] * orthogonal_unit(
        centres.reshape(-1, 3)
    ).reshape(g, k, 3)
    ii, jj = np.triu_indices(k, 1)
    plus, minus = _circle_crossings(
        centres[:, ii], centres[:, jj], radius_rad[:, ii], radius_rad[:, jj]
    )
    pts = np.concatenate([centres, on_circle, plus, minus], axis=1)
    norms = np.linalg.norm(pts, axis=-1, keepdims=True)
    return np.asarray(pts / np.where(norms > 0, norms, 1.0), dtype=np.float64)


def _circle_crossings(
    a: Float64Array, b: Float64Array, alpha: Float64Array, beta: Float64Array
) -> tuple[Float64Array, Float64Array]:
    """The two crossing points of circles (a, alpha) and (b, beta), computed stably.

    Works in the frame of the great circle through a and b, with half-versines (sin^2 of half
    angles) so that small caps and close centres lose no precision: the crossing sits at angle x
    from a along that great circle and h off it, with cos(alpha) = cos(x) cos(h) and
    cos(beta) = cos(sep - x) cos(h). Pairs that do not cross return a centre instead.
    """
    normal = np.cross(a, b)
    s = np.linalg.norm(normal, axis=-1)
    sep = np.arctan2(s, np.einsum("...i,...i->...", a, b))
    ok = s > 1e-300
    e3 = normal / np.where(ok, s, 1.0)[..., None]
    e2 = np.cross(e3, a)
    h_alpha = np.sin(alpha / 2.0) ** 2
    h_beta = np.sin(beta / 2.0) ** 2
    h_sep = np.sin(sep / 2.0) ** 2
    x = np.arctan2(
        2.0 * (h_alpha + h_sep - h_beta - 2.0 * h_alpha * h_sep), np.cos(alpha) * np.sin(sep)
    )
    cos_x = np.cos(x)
    ok &= np.abs(cos_x) > 1e-12
    h_h = (h_alpha - np.sin(x / 2.0) ** 2) / np.where(ok, cos_x, 1.0)
    ok &= (h_h >= -1e-12) & (h_h <= 1.0 + 1e-12)
    h = 2.0 * np.arcsin(np.sqrt(np.clip(h_h, 0.0, 1.0)))
    foot = cos_x[..., None] * a + np.sin(x)[..., None] * e2
    off = np.sin(h)[..., None] * e3
    plus = np.cos(h)[..., None] * foot + off
    minus = np.cos(h)[..., None] * foot - off
    # A pair that does not cross adds a centre: an extra candidate is harmless, a missing one not.
    return np.where(ok[..., None], plus, a), np.where(ok[..., None], minus, b)


def inside_all(
    points: Float64Array, centres: Float64Array, radius_rad: Float64Array
) -> NDArray[np.bool_]:
    """(g, q) mask: point q of device g lies in every cap of device g (caps grown by tolerance)."""
    cos_limit = np.cos(np.minimum(radius_rad + CAP_TOLERANCE_RAD, WHOLE_SPHERE_RAD))
    dots = np.einsum("gqi,gki->gqk", points, centres)
    return np.asarray(np.all(dots >= cos_limit[:, None, :] - 1e-15, axis=-1))


def witnesses(
    centres: Float64Array, radius_rad: Float64Array
) -> tuple[NDArray[np.bool_], Float64Array, NDArray[np.bool_]]:
    """Non-emptiness of each device's feasible region, with its witness points.

    Returns (nonempty (g,), candidates (g, q, 3), in_f (g, q)). Candidates are generated from
    caps grown by CAP_TOLERANCE_RAD and tested against caps grown twice as much.
    """
    grown = np.minimum(radius_rad + CAP_TOLERANCE_RAD, WHOLE_SPHERE_RAD)
    cands = candidate_points(centres, grown)
    in_f = inside_all(cands, centres, grown)
    return np.asarray(in_f.any(axis=1)), cands, in_f


QUICK_MARGIN = 1e-12
"""`quick_witnesses` counts a point only this far (in cosine) inside every cap, so that rounding
cannot make it report a point that the exact test would not."""


def quick_witnesses(centres: Float64Array, radius_rad: Float64Array) -> NDArray[np.bool_]:
    """(g,) True where a point certainly lies in every cap of the device: sufficient for a
    non-empty F, not necessary (False means "not shown", and `witnesses` must decide).

    Tries only the candidates of each device's two smallest caps (their centres, fixed points and
    crossings: 6 of the k (k + 1)). After `drop_redundant` most feasible regions are one cap or
    the lens of two, whose candidates these are; a hit is strictly inside every cap grown by
    CAP_TOLERANCE_RAD, so `witnesses` (which tests caps grown twice as much) finds F non-empty
    too.
    """
    g, k, _ = centres.shape
    grown = np.minimum(radius_rad + CAP_TOLERANCE_RAD, WHOLE_SPHERE_RAD)
    if k == 0 or g == 0:
        return np.zeros(g, dtype=bool)
    pick = np.sort(np.argsort(radius_rad, axis=1, kind="stable")[:, : min(k, 2)], axis=1)
    c = np.take_along_axis(centres, pick[..., None], axis=1)
    r = np.take_along_axis(grown, pick, axis=1)
    cands = candidate_points(c, r)
    dots = np.einsum("gqi,gki->gqk", cands, centres)
    limit = np.where(grown >= WHOLE_SPHERE_RAD, -np.inf, np.cos(grown) + QUICK_MARGIN)
    return np.asarray(np.all(dots >= limit[:, None, :], axis=-1).any(axis=1))


def drop_redundant(
    centres: Float64Array, radius_rad: Float64Array
) -> tuple[Float64Array, Float64Array, NDArray[np.int64]]:
    """Remove caps that contain another cap of the same device; F is unchanged.

    Returns compacted arrays (g, k', ...) with k' the largest kept count, padded with whole
    sphere caps, and the kept count per device. Of two identical caps the first is kept.
    """
    g, k, _ = centres.shape
    if k <= 1:
        return centres, radius_rad, np.full(g, k, dtype=np.int64)
    sep = np.arccos(np.clip(np.einsum("gai,gbi->gab", centres, centres), -1.0, 1.0))
    # contains[g, a, b]: cap a contains cap b.
    contains = sep + radius_rad[:, None, :] <= radius_rad[:, :, None] - 1e-12
    same = (np.abs(sep) <= 1e-12) & (
        np.abs(radius_rad[:, None, :] - radius_rad[:, :, None]) <= 1e-12
    )
    earlier = np.tril(np.ones((k, k), dtype=bool), -1)  # b < a
    contains |= same & earlier[None]
    np.einsum("gaa->ga", contains)[...] = False
    redundant = contains.any(axis=2) | (radius_rad >= WHOLE_SPHERE_RAD)
    kept = (~redundant).sum(axis=1)
    order = np.argsort(redundant, axis=1, kind="stable")
    k_new = max(int(kept.max()), 1)
    idx = order[:, :k_new]
    c = np.take_along_axis(centres, idx[..., None], axis=1)
    r = np.take_along_axis(radius_rad, idx, axis=1)
    pad = np.arange(k_new)[None, :] >= kept[:, None]
    r = np.where(pad, WHOLE_SPHERE_RAD, r)
    return c, r, kept.astype(np.int64)


def cap_radius_rad(distance_km: Float64Array) -> Float64Array:
    """Angular radius on the model sphere for a distance bound in km, capped at the whole sphere."""
    return np.minimum(np.asarray(distance_km, dtype=np.float64) / EARTH_MEAN_RADIUS_KM, np.pi)
