"""Spherical caps and their intersection (the feasible region), vectorised over many devices.

A cap is a centre (unit vector on the model sphere, geo.conformal) and an angular radius in
[0, pi]. A device's feasible region F is the intersection of its caps. Arrays are shaped
(g, k, ...) for g devices with k caps each; devices with fewer caps are padded with whole-sphere
caps (radius pi), which change nothing.

Emptiness is decided by candidate points (see `candidate_points`): F is non-empty if and only if
one of the candidates lies in every cap, and the candidates meet every connected component of F.
Rounding is handled by tolerances that only ever make F look larger: caps are grown by
CAP_TOLERANCE_RAD when they are made, and a computed candidate counts as a witness when it lies
within WITNESS_TOLERANCE_RAD of every cap. So "F is empty" is certain; "F is not empty" may be
said of an F that misses by under a metre. Growing F is the safe direction: it can turn a
VERIFIED into an UNVERIFIED but never the reverse, and it never makes honest landmarks look
INCONSISTENT.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lightfence.geo.boundary import HALF_SPACING_RAD
from lightfence.geo.sphere import Float64Array, orthogonal_unit
from lightfence.units import EARTH_MEAN_RADIUS_KM

CAP_TOLERANCE_RAD = 1e-9
"""Growth applied to every cap against floating-point error: about 6 mm on the Earth."""

WITNESS_TOLERANCE_RAD = 1e-7
"""How far outside a cap (about 0.64 m) a candidate may be and still count as a witness of F.

Candidates come from caps grown by half of it; computed crossings are that accurate with a wide
margin (tests/test_caps_numerics.py measures below 1e-10 rad even for nearly tangent circles at
hemisphere size), so no point of F is ever missed. The price is that an F empty by less than
this counts as non-empty, which only ever moves a verdict away from INCONSISTENT, VERIFIED or
REFUTED."""

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
    """The two crossing points of circles (a, alpha) and (b, beta), stable at every size.

    A circle is also the circle of the antipodal centre with the supplementary radius, so each
    is first taken with radius <= pi/2 (cos r >= 0): hemisphere-sized and larger caps then need
    no special case. In the frame of the great circle through the centres, the crossing sits at
    angle x from a along it and h off it, with cos(alpha) = cos(x) cos(h) and
    cos(beta) = cos(sep - x) cos(h). x comes from half-versines (no precision lost for small caps
    or close centres) through atan2; h from whichever circle gives the larger divisor
    (cos x or cos(sep - x)), so no rounding is ever divided by a number near zero.

    Every pair gets two points: a pair that does not quite cross gets its nearest approach, a
    harmless extra candidate. Only concentric pairs (centres equal or antipodal, where circles
    coincide or never meet) return the centres; the fixed point on each circle covers them.
    """
    flip_a = alpha > np.pi / 2
    flip_b = beta > np.pi / 2
    a = np.where(flip_a[..., None], -a, a)
    b = np.where(flip_b[..., None], -b, b)
    alpha = np.where(flip_a, np.pi - alpha, alpha)
    beta = np.where(flip_b, np.pi - beta, beta)
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
    y = sep - x
    cos_x = np.cos(x)
    cos_y = np.cos(y)
    # hav(h) = (hav(alpha) - hav(x)) / cos(x) = (hav(beta) - hav(y)) / cos(y).
    from_a = np.abs(cos_x) >= np.abs(cos_y)
    num = np.where(from_a, h_alpha - np.sin(x / 2.0) ** 2, h_beta - np.sin(y / 2.0) ** 2)
    den = np.where(from_a, cos_x, cos_y)
    # den = 0 needs cos(alpha) = cos(beta) = 0: two great circles, which cross at h = pi/2.
    h_h = np.where(den != 0.0, num / np.where(den != 0.0, den, 1.0), 0.5)
    h_h = np.clip(h_h, 0.0, 1.0)
    cos_h = 1.0 - 2.0 * h_h
    sin_h = 2.0 * np.sqrt(h_h * (1.0 - h_h))
    foot = cos_x[..., None] * a + np.sin(x)[..., None] * e2
    off = sin_h[..., None] * e3
    plus = cos_h[..., None] * foot + off
    minus = cos_h[..., None] * foot - off
    return np.where(ok[..., None], plus, a), np.where(ok[..., None], minus, b)


def inside_all(
    points: Float64Array, centres: Float64Array, radius_rad: Float64Array
) -> NDArray[np.bool_]:
    """(g, q) mask: point q of device g lies in every cap of device g, to within rounding
    (1e-15 in cosine). Callers pass the radii they mean, tolerances included."""
    cos_limit = np.where(radius_rad >= WHOLE_SPHERE_RAD, -np.inf, np.cos(radius_rad))
    dots = np.einsum("gqi,gki->gqk", points, centres)
    return np.asarray(np.all(dots >= cos_limit[:, None, :] - 1e-15, axis=-1))


VERTEX_SLACK_RAD = HALF_SPACING_RAD + WITNESS_TOLERANCE_RAD + CAP_TOLERANCE_RAD
"""Growth of F's caps when looking for a border vertex inside F: every border point is within
HALF_SPACING_RAD of a vertex, and witnesses were accepted WITNESS_TOLERANCE_RAD outside the caps
(so a border that passes between a witness and F is still found)."""


def tolerant(radius_rad: Float64Array) -> Float64Array:
    """Radii grown by WITNESS_TOLERANCE_RAD: what a witness is tested against."""
    return np.minimum(radius_rad + WITNESS_TOLERANCE_RAD, WHOLE_SPHERE_RAD)


def witnesses(
    centres: Float64Array, radius_rad: Float64Array
) -> tuple[NDArray[np.bool_], Float64Array, NDArray[np.bool_]]:
    """Non-emptiness of each device's feasible region, with its witness points.

    Returns (nonempty (g,), candidates (g, q, 3), in_f (g, q)). Candidates are the exact
    candidates of F' (caps grown by half of WITNESS_TOLERANCE_RAD), computed to far better than
    that half, and a candidate counts when it lies within WITNESS_TOLERANCE_RAD of every cap.
    So "empty" is certain (no point of F' exists, let alone of F), while "non-empty" may hold
    for an F that misses by under 0.7 m: the safe side for every verdict. See docs/physics.md.
    """
    cands = candidate_points(centres, generating(radius_rad))
    in_f = inside_all(cands, centres, tolerant(radius_rad))
    return np.asarray(in_f.any(axis=1)), cands, in_f


def generating(radius_rad: Float64Array) -> Float64Array:
    """Radii grown by half of WITNESS_TOLERANCE_RAD: the caps whose candidates are computed."""
    return np.minimum(radius_rad + WITNESS_TOLERANCE_RAD / 2.0, WHOLE_SPHERE_RAD)


QUICK_MARGIN = 1e-12
"""`quick_witnesses` counts a point only this far (in cosine) inside every cap, so that rounding
cannot make it report a point that the exact test would not."""


def quick_witnesses(centres: Float64Array, radius_rad: Float64Array) -> NDArray[np.bool_]:
    """(g,) True where a point certainly lies in every cap of the device: sufficient for a
    non-empty F, not necessary (False means "not shown", and `witnesses` must decide).

    Tries only the candidates of each device's two smallest caps (their centres, fixed points and
    crossings: 6 of the k (k + 1)). After `drop_redundant` most feasible regions are one cap or
    the lens of two, whose candidates these are; a hit lies strictly (QUICK_MARGIN in cosine to
    spare) inside every cap grown by half of WITNESS_TOLERANCE_RAD, the F' whose candidates
    `witnesses` computes, so `witnesses` would find F' non-empty too.
    """
    g, k, _ = centres.shape
    grown = generating(np.asarray(radius_rad, dtype=np.float64))
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
