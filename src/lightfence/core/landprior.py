"""Which points are on land: a prior for the display estimate, never for a verdict.

Hosts stand in buildings. When a feasible region is wide (a target far from every landmark),
its centroid is pulled out to sea by the area of water it spans; keeping only the region's land
points (Octant's "geographic constraints", Wong et al. 2007) moves it back towards where hosts
can be. Natural Earth 1:10m land, simplified by LAND_SIMPLIFY_DEG for speed: that error (about
2 km) is far below an estimate's (hundreds of km) and never touches a verdict.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from lightfence.geo.naturalearth import countries
from lightfence.geo.sphere import Float64Array

LAND_SIMPLIFY_DEG = 0.02
"""Simplification of the land outline for the prior (about 2 km): display accuracy only."""


@cache
def _land() -> Any:
    geom = shapely.union_all(
        [shapely.simplify(c.geometry, LAND_SIMPLIFY_DEG) for c in countries().values()]
    )
    shapely.prepare(geom)
    return geom


def on_land(lat_deg: Float64Array, lon_deg: Float64Array) -> NDArray[np.bool_]:
    """Whether each point lies on (simplified Natural Earth) land."""
    lon = (np.asarray(lon_deg, dtype=np.float64) + 180.0) % 360.0 - 180.0
    return np.asarray(shapely.intersects_xy(_land(), lon, np.asarray(lat_deg)), dtype=bool)
