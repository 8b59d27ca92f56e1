"""The feasible region as GeoJSON, for maps. Display only: verdicts never read it.

The region is rasterised on a lon/lat grid over the smallest cap's bounding box (about
GRID_CELLS cells a side) and cells whose centre lies in every cap are merged into polygons.
The outline is therefore accurate to one cell; the cell size is stated in the output.
Boxes never cross the antimeridian (the grid is split there), so GeoJSON stays valid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box, mapping

from lightfence.geo.conformal import model_vectors
from lightfence.geo.sphere import Float64Array
from lightfence.units import EARTH_MEAN_RADIUS_KM

GRID_CELLS = 160


def _lon_intervals(lon_c: float, half_width: float) -> list[tuple[float, float]]:
    if half_width >= 180.0:
        return [(-180.0, 180.0)]
    lo, hi = lon_c - half_width, lon_c + half_width
    if lo < -180.0:
        return [(lo + 360.0, 180.0), (-180.0, hi)]
    if hi > 180.0:
        return [(lo, 180.0), (-180.0, hi - 360.0)]
    return [(lo, hi)]


def _bounding_box(
    lat: float, lon: float, radius_rad: float
) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    # Conformal and geodetic latitude differ by up to 0.19 degrees: pad the box for display.
    r_deg = math.degrees(radius_rad) * 1.0068 + 0.2
    lat_lo, lat_hi = lat - r_deg, lat + r_deg
    if lat_lo <= -90.0 or lat_hi >= 90.0 or radius_rad >= math.pi / 2:
        return (max(lat_lo, -90.0), min(lat_hi, 90.0)), [(-180.0, 180.0)]
    half = math.degrees(math.asin(min(math.sin(radius_rad) / math.cos(math.radians(lat)), 1.0)))
    return (lat_lo, lat_hi), _lon_intervals(((lon + 180.0) % 360.0) - 180.0, half)


def feasible_geojson(
    lat_deg: Float64Array, lon_deg: Float64Array, radius_rad: Float64Array
) -> dict[str, Any]:
    """A GeoJSON Feature with the (approximate) intersection of the caps as a MultiPolygon."""
    centres = model_vectors(lat_deg, lon_deg).reshape(-1, 3)
    cos_r = np.cos(radius_rad)
    i = int(np.argmin(radius_rad))
    (lat_lo, lat_hi), lon_ranges = _bounding_box(
        float(lat_deg[i]), float(lon_deg[i]), float(radius_rad[i])
    )
    cell = max((lat_hi - lat_lo) / GRID_CELLS, 1e-4)
    boxes = []
    for lon_lo, lon_hi in lon_ranges:
        lats = np.arange(lat_lo + cell / 2, lat_hi, cell)
        lons = np.arange(lon_lo + cell / 2, lon_hi, cell)
        if len(lats) == 0 or len(lons) == 0:
            continue
        glat, glon = np.meshgrid(lats, lons, indexing="ij")
        pts = model_vectors(glat, glon)
        inside = np.all(pts @ centres.T >= cos_r, axis=-1)
        for r, row in enumerate(inside):
            # Merge runs of inside cells in each row into one box.
            edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                boxes.append(
                    box(
                        max(lons[a] - cell / 2, -180.0),
                        max(lats[r] - cell / 2, -90.0),
                        min(lons[b - 1] + cell / 2, 180.0),
                        min(lats[r] + cell / 2, 90.0),
                    )
                )
    geometry = mapping(shapely.union_all(boxes)) if boxes else None
    return {
        "type": "Feature",
        "geometry": dict(geometry) if geometry else None,
        "properties": {
            "kind": "feasible-region",
            "approximate": True,
            "cell_deg": cell,
            "caps": [
                {"lat": float(a), "lon": float(b), "radius_km": float(r * EARTH_MEAN_RADIUS_KM)}
                for a, b, r in zip(lat_deg, lon_deg, radius_rad, strict=True)
            ],
        },
    }
