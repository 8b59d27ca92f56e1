"""A region's boundary as a dense set of points on the sphere, indexed for distance queries.

Boundary edges are the straight lon/lat segments of the polygon data. Each is cut into pieces
no longer than BOUNDARY_SPACING_RAD on the model sphere (geo.conformal; an upper bound on arc
length, see `_pieces`), so every boundary point lies within HALF_SPACING_RAD of a stored vertex.
Distances to the boundary are therefore lower-bounded as (angle to the nearest vertex) -
HALF_SPACING_RAD, and a boundary point inside a cap of radius r puts a vertex inside the same
cap grown by HALF_SPACING_RAD.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from lightfence.geo.conformal import model_vectors
from lightfence.geo.sphere import Float64Array, orthogonal_unit
from lightfence.units import EARTH_MEAN_RADIUS_KM

BOUNDARY_SPACING_KM = 2.0
"""Largest arc length between consecutive stored boundary vertices."""

BOUNDARY_SPACING_RAD = BOUNDARY_SPACING_KM / EARTH_MEAN_RADIUS_KM
"""The same spacing as an angle on the model sphere: what the engine's tests rely on."""

HALF_SPACING_RAD = BOUNDARY_SPACING_RAD / 2.0

CONFORMAL_STRETCH = 1.0068
"""Bound on d(chi)/d(phi) and cos(chi)/cos(phi) for conformal latitude chi (largest at the poles,
1.006732; tests/test_conformal.py): how much longer a lon/lat step is on the model sphere than on
a sphere with geodetic latitude."""

MAX_PROBES = 64
"""Stored vertices sampled for the vectorised first try of the border test (core.batch)."""


def _pieces(lon: Float64Array, lat: Float64Array) -> NDArray[np.int64]:
    """How many pieces each segment needs so that no piece is longer than the spacing.

    The angle a straight lon/lat segment spans on the model sphere is at most
    CONFORMAL_STRETCH * (|dlat| + |dlon| * max cos(lat) over the segment), with cos(lat) <= 1 if
    it crosses the equator: a bound, not an estimate, so the spacing promise holds.
    """
    lat_r = np.radians(lat)
    dlat = np.abs(np.diff(lat_r))
    dlon = np.abs(np.diff(np.radians(lon)))
    cos_max = np.maximum(np.cos(lat_r[:-1]), np.cos(lat_r[1:]))
    crosses_equator = np.sign(lat[:-1]) != np.sign(lat[1:])
    cos_max = np.where(crosses_equator, 1.0, cos_max)
    length_rad = CONFORMAL_STRETCH * (dlat + dlon * cos_max)
    pieces: NDArray[np.int64] = np.maximum(np.ceil(length_rad / BOUNDARY_SPACING_RAD), 1).astype(
        np.int64
    )
    return pieces


def densify_ring(lon: Float64Array, lat: Float64Array) -> tuple[Float64Array, Float64Array]:
    """Points along a closed or open lon/lat polyline, spaced at most BOUNDARY_SPACING_KM."""
    if len(lon) < 2:
        return lon.copy(), lat.copy()
    n = _pieces(lon, lat)
    seg = np.repeat(np.arange(len(n)), n)
    frac = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    t = frac / np.repeat(n, n)
    out_lon = lon[seg] + (lon[seg + 1] - lon[seg]) * t
    out_lat = lat[seg] + (lat[seg + 1] - lat[seg]) * t
    return np.append(out_lon, lon[-1]), np.append(out_lat, lat[-1])


class BoundaryIndex:
    """Dense boundary vertices of a region with a KD-tree over their unit vectors."""

    def __init__(self, vectors: Float64Array) -> None:
        """`vectors` (n, 3) on the model sphere: every boundary point lies within
        HALF_SPACING_RAD of one."""
        self.vectors: Float64Array = np.asarray(vectors, dtype=np.float64).reshape(-1, 3)
        self._tree = cKDTree(self.vectors) if len(self.vectors) else None
        self._blocks = _Blocks(self.vectors)

    @classmethod
    def from_rings(cls, rings: Iterable[tuple[Float64Array, Float64Array]]) -> BoundaryIndex:
        """From lon/lat polylines (straight lon/lat edges), densified to the spacing."""
        lons: list[Float64Array] = []
        lats: list[Float64Array] = []
        for lon, lat in rings:
            dlon, dlat = densify_ring(np.asarray(lon, float), np.asarray(lat, float))
            lons.append(dlon)
            lats.append(dlat)
        lon_all = np.concatenate(lons) if lons else np.zeros(0)
        lat_all = np.concatenate(lats) if lats else np.zeros(0)
        return cls(model_vectors(lat_all, lon_all))

    def __len__(self) -> int:
        return len(self.vectors)

    @cached_property
    def probes(self) -> Float64Array:
        """At most MAX_PROBES stored vertices, evenly spaced along the stored order (m, 3).

        A subset of `vectors`: a probe found deep in a device's caps is a stored vertex that
        `vertices_in_all` / `any_in_most` would find too, so testing probes first, for many
        devices at once, can settle "the border crosses F" but never contradict the full test.
        """
        stride = -(-len(self.vectors) // MAX_PROBES) if len(self.vectors) else 1
        return np.ascontiguousarray(self.vectors[::stride])

    def distance_lower_bound_rad(self, points: Float64Array) -> Float64Array:
        """A lower bound on the angle from each point (n, 3) to the nearest boundary point."""
        if self._tree is None:
            return np.full(len(points), np.pi)
        chord, _ = self._tree.query(points, k=1)
        angle = 2.0 * np.arcsin(np.clip(np.asarray(chord) / 2.0, 0.0, 1.0))
        return np.asarray(np.maximum(angle - HALF_SPACING_RAD, 0.0))

    def vertices_in_all(self, centres: Float64Array, radius_rad: Float64Array) -> Float64Array:
        """The stored vertices inside every cap (k, 3), (k,), found block by block."""
        cos_r = np.cos(np.minimum(radius_rad, np.pi))
        cand = self._blocks.members_meeting_all(centres, radius_rad)
        if len(cand) == 0:
            return np.zeros((0, 3))
        pts = self.vectors[cand]
        keep = np.all(pts @ centres.T >= cos_r[None, :] - 1e-15, axis=1)
        return np.asarray(pts[keep])

    def any_in_most(self, centres: Float64Array, radius_rad: Float64Array, misses: int) -> bool:
        """Whether a stored vertex lies outside at most `misses` of the caps (k, 3), (k,): has
        depth at least k - misses. `vertices_in_all` is the case misses = 0 (core.robust uses
        this). Every SAMPLE_STRIDE-th candidate is tried first: a border that crosses the region
        usually has many such vertices, and one settles it; only then are all tried."""
        cand = self._blocks.members_meeting_most(centres, radius_rad, misses)
        if len(cand) == 0:
            return False
        pts = self.vectors[cand]
        cos_r = np.cos(np.minimum(radius_rad, np.pi)) - 1e-15
        order = np.argsort(radius_rad, kind="stable")
        for sample in (pts[::SAMPLE_STRIDE], pts):
            left = sample
            missed = np.zeros(len(left), dtype=np.int64)
            # Smallest caps first: they drop the most vertices early.
            for cap in order:
                missed += left @ centres[cap] < cos_r[cap]
                alive = missed <= misses
                left, missed = left[alive], missed[alive]
                if len(left) == 0:
                    break
            if len(left):
                return True
        return False

    def vertices_in_most(
        self, centres: Float64Array, radius_rad: Float64Array, misses: int
    ) -> Float64Array:
        """The stored vertices outside at most `misses` of the caps (k, 3), (k,)."""
        cand = self._blocks.members_meeting_most(centres, radius_rad, misses)
        if len(cand) == 0:
            return np.zeros((0, 3))
        pts = self.vectors[cand]
        cos_r = np.cos(np.minimum(radius_rad, np.pi)) - 1e-15
        missed = (pts @ centres.T < cos_r[None, :]).sum(axis=1)
        return np.asarray(pts[missed <= misses])

    def vertices_within(self, centre: Float64Array, angle_rad: float) -> Float64Array:
        """The stored vertices within `angle_rad` of `centre` (3,)."""
        if self._tree is None:
            return np.zeros((0, 3))
        if angle_rad >= np.pi:
            return self.vectors
        chord = 2.0 * np.sin(angle_rad / 2.0)
        idx = self._tree.query_ball_point(centre, chord * (1.0 + 1e-12))
        return self.vectors[np.asarray(idx, dtype=np.int64)]


def circle_vectors(centre: Float64Array, angle_rad: float) -> Float64Array:
    """Points on a small circle of the sphere, spaced at most BOUNDARY_SPACING_KM apart."""
    circumference_rad = 2.0 * np.pi * abs(np.sin(angle_rad))
    n = max(int(np.ceil(circumference_rad / BOUNDARY_SPACING_RAD)), 8)
    u = orthogonal_unit(centre[None, :])[0]
    w = np.cross(centre, u)
    phi = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    ring = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * w
    return np.asarray(np.cos(angle_rad) * centre + np.sin(angle_rad) * ring, dtype=np.float64)


BLOCK_SIZE = 64
SAMPLE_STRIDE = 64


class _Blocks:
    """Consecutive boundary vertices in blocks of BLOCK_SIZE, each with a bounding cap.

    A block can hold a vertex inside every one of k caps only if its bounding cap meets each of
    them; that test, vectorised over blocks, discards almost all of a long border at once.
    """

    def __init__(self, vectors: Float64Array) -> None:
        n = len(vectors)
        self.n_blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
        if n == 0:
            self.centres = np.zeros((0, 3))
            self.radius = np.zeros(0)
            return
        pad = self.n_blocks * BLOCK_SIZE - n
        padded = np.concatenate([vectors, np.repeat(vectors[-1:], pad, axis=0)])
        blocks = padded.reshape(self.n_blocks, BLOCK_SIZE, 3)
        mean = blocks.mean(axis=1)
        norm = np.linalg.norm(mean, axis=1, keepdims=True)
        centres = np.where(norm > 1e-9, mean / np.where(norm > 0, norm, 1.0), blocks[:, 0])
        cosines = np.einsum("bsi,bi->bs", blocks, centres)
        # Small extra margin: the bound must hold despite rounding in arccos.
        self.radius = np.arccos(np.clip(cosines.min(axis=1), -1.0, 1.0)) + 1e-9
        self.centres = centres
        self.size = n

    def members_meeting_most(
        self, centres: Float64Array, radius_rad: Float64Array, misses: int
    ) -> NDArray[np.int64]:
        """Members of the blocks whose bounding cap meets all but at most `misses` caps."""
        if self.n_blocks == 0:
            return np.zeros(0, dtype=np.int64)
        sep = np.arccos(np.clip(self.centres @ centres.T, -1.0, 1.0))
        apart = sep > self.radius[:, None] + radius_rad[None, :] + 1e-9
        return self._members(np.flatnonzero(apart.sum(axis=1) <= misses))

    def _members(self, blocks: NDArray[np.int64]) -> NDArray[np.int64]:
        if len(blocks) == 0:
            return np.zeros(0, dtype=np.int64)
        idx = (blocks[:, None] * BLOCK_SIZE + np.arange(BLOCK_SIZE)[None, :]).ravel()
        return np.asarray(idx[idx < self.size], dtype=np.int64)

    def members_meeting_all(
        self, centres: Float64Array, radius_rad: Float64Array
    ) -> NDArray[np.int64]:
        if self.n_blocks == 0:
            return np.zeros(0, dtype=np.int64)
        sep = np.arccos(np.clip(self.centres @ centres.T, -1.0, 1.0))
        meets = np.all(sep <= self.radius[:, None] + radius_rad[None, :] + 1e-9, axis=1)
        blocks = np.flatnonzero(meets)
        if len(blocks) == 0:
            return np.zeros(0, dtype=np.int64)
        idx = (blocks[:, None] * BLOCK_SIZE + np.arange(BLOCK_SIZE)[None, :]).ravel()
        return np.asarray(idx[idx < self.size], dtype=np.int64)
