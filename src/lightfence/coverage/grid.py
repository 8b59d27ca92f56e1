"""The global grid a coverage map is computed on: H3 cells whose centre lies on land.

Resolution 2 (5,882 cells worldwide, about 86,700 km² and 180 km across each; 1,700 of them on
land) is the default: a whole-world map with 250 landmarks takes 15 s to a minute on two cores
(bench/coverage.py). Resolution 3 (41,162 cells, 12,400 km²) is seven times the work.

Only land cells are kept: the GPUs a map is for stand in buildings, and "land" here is any
Natural Earth admin-0 polygon, the same data the policies use. Each cell carries the country its
centre lies in, which is what an honest device there would declare. A country smaller than a
cell can be missed by the grid; sites and hosts are therefore always evaluated at their exact
positions as well (coverage.model.evaluate_places).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import h3
import numpy as np
import shapely

from lightfence.geo.naturalearth import countries
from lightfence.geo.sphere import Float64Array

DEFAULT_RESOLUTION = 2
MAX_RESOLUTION = 4
"""Resolution 4 has 288,122 cells: hours of engine time, so it is the most the CLI allows."""


@dataclass(frozen=True)
class Grid:
    resolution: int
    cells: tuple[str, ...]
    """H3 cell ids (hex strings)."""
    lat: Float64Array
    """Cell centre latitudes, degrees."""
    lon: Float64Array
    area_km2: Float64Array
    country: tuple[str, ...]
    """ISO alpha-2 code of the country the centre lies in."""

    def __len__(self) -> int:
        return len(self.cells)


def country_of(lat: Float64Array, lon: Float64Array) -> list[str | None]:
    """The Natural Earth country each point lies in, None at sea."""
    table = countries()
    codes = list(table)
    tree = shapely.STRtree([table[c].geometry for c in codes])
    pts = shapely.points(np.asarray(lon), np.asarray(lat))
    point_idx, geom_idx = tree.query(pts, predicate="intersects")
    out: list[str | None] = [None] * len(pts)
    for p, g in zip(point_idx.tolist(), geom_idx.tolist(), strict=True):
        if out[p] is None:  # overlapping claims: the first polygon wins, deterministically
            out[p] = codes[g]
    return out


@cache
def land_grid(resolution: int = DEFAULT_RESOLUTION) -> Grid:
    """Every H3 cell of `resolution` whose centre is on land, in H3's own order."""
    if not 0 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be 0..{MAX_RESOLUTION}, got {resolution}")
    every = [c for base in h3.get_res0_cells() for c in h3.cell_to_children(base, resolution)]
    every.sort()
    centres = np.asarray([h3.cell_to_latlng(c) for c in every], dtype=np.float64)
    code = country_of(centres[:, 0], centres[:, 1])
    keep = [i for i, c in enumerate(code) if c is not None]
    cells = tuple(every[i] for i in keep)
    return Grid(
        resolution=resolution,
        cells=cells,
        lat=centres[keep, 0],
        lon=centres[keep, 1],
        area_km2=np.asarray([h3.cell_area(c, "km^2") for c in cells], dtype=np.float64),
        country=tuple(str(code[i]) for i in keep),
    )


def cell_at(lat: float, lon: float, resolution: int) -> str:
    return str(h3.latlng_to_cell(lat, lon, resolution))


def cell_centre(cell: str) -> tuple[float, float]:
    lat, lon = h3.cell_to_latlng(cell)
    return float(lat), float(lon)


def cell_outline(cell: str) -> list[tuple[float, float]]:
    """The cell's corners as (lon, lat), closed, with longitudes made continuous so that cells
    across the antimeridian stay one polygon (they then reach beyond 180)."""
    pts = [(float(lon), float(lat)) for lat, lon in h3.cell_to_boundary(cell)]
    lons = np.asarray([p[0] for p in pts])
    if lons.max() - lons.min() > 180.0:
        pts = [(lon + 360.0 if lon < 0 else lon, lat) for lon, lat in pts]
    return [*pts, pts[0]]
