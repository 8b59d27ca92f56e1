"""A slow, independent reference for verdicts: dense sampling of the feasible region.

It shares nothing with the engine but the cap radius formula. F meets the forbidden region
grown by its data error if (a) a sample point of F (spread evenly over the smallest cap, kept
when inside every cap) lies in the region (shapely point in polygon), or (b) a point of the
region's boundary, densified by shapely to REFERENCE_SEGMENT_DEG, lies inside every cap grown by
the data error. Both can miss a sliver thinner than their spacing, so the reference errs towards
VERIFIED; the engine must never VERIFY what the reference does not, and must not lose more than
1 percentage point of coverage against it.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from scipy.spatial import cKDTree

from lightfence.core.batch import MeasurementTable, cap_radius_rad
from lightfence.core.policy import Policy
from lightfence.geo.regions import Complement, Countries
from lightfence.geo.sphere import lat_lon, orthogonal_unit, unit_vectors
from lightfence.units import EARTH_MEAN_RADIUS_KM

GOLDEN = math.pi * (3.0 - math.sqrt(5.0))


def sample_cap(centre: np.ndarray, radius_rad: float, spacing_km: float) -> np.ndarray:
    area_km2 = 2 * math.pi * EARTH_MEAN_RADIUS_KM**2 * (1 - math.cos(radius_rad))
    n = int(min(max(area_km2 / spacing_km**2, 50), 20_000))
    i = np.arange(n) + 0.5
    z = 1.0 - (1.0 - math.cos(radius_rad)) * i / n
    phi = i * GOLDEN
    u = orthogonal_unit(centre[None])[0]
    w = np.cross(centre, u)
    s = np.sqrt(np.clip(1 - z * z, 0, 1))
    ring = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * w
    return np.asarray(z[:, None] * centre + s[:, None] * ring)


REFERENCE_SEGMENT_DEG = 0.005


class ForbiddenTest:
    def __init__(self, region: Countries, complement: bool) -> None:
        self.region = region
        self.complement = complement
        geom = shapely.segmentize(region.geometry, REFERENCE_SEGMENT_DEG)
        verts = []
        for poly in getattr(geom, "geoms", [geom]):
            for ring in [poly.exterior, *poly.interiors]:
                verts.append(np.asarray(ring.coords))
        xy = np.concatenate(verts)
        self.boundary = unit_vectors(xy[:, 1], xy[:, 0])
        self.tree = cKDTree(self.boundary)
        self.error_rad = region.data_error_km / EARTH_MEAN_RADIUS_KM

    def hits(self, f_points: np.ndarray, centres: np.ndarray, radius: np.ndarray) -> bool:
        """Does F (sampled, and given by its caps) meet the region grown by its data error?"""
        lat, lon = lat_lon(f_points)
        inside = self.region.contains(lat, lon)
        forbidden = ~inside if self.complement else inside
        if forbidden.any():
            return True
        grown = radius + self.error_rad
        i = int(np.argmin(grown))
        near = self.tree.query_ball_point(centres[i], 2 * np.sin(min(grown[i], np.pi) / 2))
        pts = self.boundary[np.asarray(near, dtype=np.int64)]
        return bool(np.any(np.all(pts @ centres.T >= np.cos(grown), axis=1)))


def forbidden_test(policy: Policy, claimed: str | None) -> ForbiddenTest:
    allowed = policy.allowed_for(claimed)
    if isinstance(allowed, Complement) and isinstance(allowed.inner, Countries):
        return ForbiddenTest(allowed.inner, complement=False)
    assert isinstance(allowed, Countries)
    return ForbiddenTest(allowed, complement=True)


def reference_verified(
    table: MeasurementTable, device: int, policy: Policy, test: ForbiddenTest, spacing_km: float
) -> bool:
    lo, hi = int(table.device_start[device]), int(table.device_start[device + 1])
    radius = cap_radius_rad(table, policy.bound)[lo:hi]
    centres = unit_vectors(table.lat_deg[lo:hi], table.lon_deg[lo:hi]).reshape(-1, 3)
    i = int(np.argmin(radius))
    spacing = max(spacing_km, radius[i] * EARTH_MEAN_RADIUS_KM / 80)
    pts = sample_cap(centres[i], float(radius[i]), spacing)
    keep = np.all(pts @ centres.T >= np.cos(radius), axis=1)
    pts = pts[keep]
    if len(pts) == 0:
        return False  # empty (or too thin to sample): the reference does not verify
    return not test.hits(pts, centres, radius)
