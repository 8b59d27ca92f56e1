"""The feasible region as GeoJSON vector polygons, for maps. Display only: verdicts never read it.

Each cap's circle is sampled at CIRCLE_VERTICES points on the model sphere, turned into a
lon/lat polygon and the caps are intersected in the plane. Membership in a cap is a property of
the point alone, so intersecting the caps' lon/lat images is the image of the intersection: the
only error is the sampling of each circle (a chord's sagitta, r * (1 - cos(pi / n)), about
0.2 km for a 5,000 km cap), stated in the output as `cell_deg`.

Antimeridian: a circle's longitudes are unwrapped along it, the polygon is built in that
continuous frame and then cut at +-180 and the pieces shifted back, so no ring crosses the
antimeridian. A cap holding a pole is closed along the pole's latitude; a cap larger than a
hemisphere is the world minus its (smaller) complement cap.

Besides the geometry, the properties say how large the region is (`area_fraction` of the globe)
and give an `estimate` (a point and a radius) only when the region is small enough for a point to
mean something; a region covering much of the globe has `estimate: null` and is said in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.geometry.base import BaseGeometry

from lightfence.geo.conformal import model_lat_lon, model_vectors
from lightfence.geo.sphere import Float64Array, orthogonal_unit
from lightfence.units import EARTH_MEAN_RADIUS_KM

CIRCLE_VERTICES = 360
"""Points per cap circle: a 1-degree step of bearing."""
ESTIMATE_MAX_RADIUS_KM = 2_500.0
"""Largest region (centre to farthest vertex) that still gets a point estimate on the map:
beyond it a dot would suggest a precision the RTTs do not give (a country at best)."""
COORD_DECIMALS = 4
WORLD = box(-180.0, -90.0, 180.0, 90.0)


def _circle(lat_deg: float, lon_deg: float, radius_rad: float) -> tuple[Float64Array, Float64Array]:
    """Lat and (unwrapped) lon of CIRCLE_VERTICES + 1 points around the cap's circle (closed)."""
    centre = model_vectors(np.array([lat_deg]), np.array([lon_deg])).reshape(1, 3)
    e1 = orthogonal_unit(centre)[0]
    e2 = np.cross(centre[0], e1)
    theta = np.linspace(0.0, 2.0 * math.pi, CIRCLE_VERTICES + 1)
    pts = math.cos(radius_rad) * centre[0] + math.sin(radius_rad) * (
        np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2
    )
    lat, lon = model_lat_lon(pts)
    lon = np.degrees(np.unwrap(np.radians(lon)))
    return lat, lon


def _fold(poly: BaseGeometry) -> BaseGeometry:
    """Cut a polygon drawn in unwrapped longitudes at +-180 and shift the pieces back."""
    parts = []
    for k in range(-2, 3):
        piece = poly.intersection(box(-180.0 + 360.0 * k, -90.0, 180.0 + 360.0 * k, 90.0))
        if not piece.is_empty:
            parts.append(affinity.translate(piece, xoff=-360.0 * k))
    return shapely.union_all(parts) if parts else Polygon()


def cap_polygon(lat_deg: float, lon_deg: float, radius_rad: float) -> BaseGeometry:
    """One cap as a lon/lat (Multi)Polygon, split at the antimeridian."""
    if radius_rad >= math.pi:
        return WORLD
    if radius_rad > math.pi / 2:
        # The complement cap is centred on the antipode with the supplementary radius.
        return WORLD.difference(cap_polygon(-lat_deg, lon_deg + 180.0, math.pi - radius_rad))
    lat, lon = _circle(lat_deg, lon_deg, radius_rad)
    turn = lon[-1] - lon[0]
    coords = list(zip(lon.tolist(), lat.tolist(), strict=True))
    if abs(turn) > 180.0:
        # The circle winds around a pole inside the cap: close the ring along that pole.
        pole = 90.0 if lat_deg > 0 else -90.0
        coords += [(float(lon[-1]), pole), (float(lon[0]), pole)]
    return _fold(shapely.make_valid(Polygon(coords)))


def _area_fraction(geom: BaseGeometry) -> float:
    """Share of the sphere's area: lon/lat -> (lon rad, sin lat) is equal-area (total 4 pi)."""
    if geom.is_empty:
        return 0.0
    projected = shapely.transform(
        geom, lambda xy: np.column_stack([np.radians(xy[:, 0]), np.sin(np.radians(xy[:, 1]))])
    )
    return float(projected.area) / (4.0 * math.pi)


def _estimate(geom: BaseGeometry) -> dict[str, float] | None:
    """A centre and radius (km) for a small region; None when a point would mislead."""
    coords = np.asarray(
        [c for poly in _polygons(geom) for c in poly.exterior.coords], dtype=np.float64
    )
    if len(coords) == 0:
        return None
    vecs = model_vectors(coords[:, 1], coords[:, 0])
    mean = vecs.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:
        return None
    centre = mean / norm
    radius_km = float(np.arccos(np.clip(vecs @ centre, -1.0, 1.0)).max()) * EARTH_MEAN_RADIUS_KM
    if radius_km > ESTIMATE_MAX_RADIUS_KM:
        return None
    lat, lon = model_lat_lon(centre)
    return {
        "lat": round(float(lat), COORD_DECIMALS),
        "lon": round(float(lon), COORD_DECIMALS),
        "radius_km": round(radius_km, 1),
    }


def _polygons(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [] if geom.is_empty else [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return [g for part in getattr(geom, "geoms", ()) for g in _polygons(part)]


def _rounded(coords: Any) -> Any:
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], float | int):
        return [round(float(c), COORD_DECIMALS) for c in coords]
    return [_rounded(c) for c in coords]


def feasible_geojson(
    lat_deg: Float64Array,
    lon_deg: Float64Array,
    radius_rad: Float64Array,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A GeoJSON Feature with the intersection of the caps as a MultiPolygon (or null if empty).

    `ids` (the landmark of each cap) only label the caps in the properties.
    """
    region: BaseGeometry = WORLD
    order = np.argsort(radius_rad)  # smallest first: the intersection shrinks fastest
    for i in order:
        region = region.intersection(
            cap_polygon(float(lat_deg[i]), float(lon_deg[i]), float(radius_rad[i]))
        )
        if region.is_empty:
            break
    polys = _polygons(region)
    geometry = None
    if polys:
        g = mapping(MultiPolygon(polys))
        geometry = {"type": "MultiPolygon", "coordinates": _rounded(g["coordinates"])}
    small = float(np.min(radius_rad)) if len(radius_rad) else math.pi
    region = MultiPolygon(polys) if polys else Polygon()
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {
            "kind": "feasible-region",
            "approximate": True,
            "cell_deg": math.degrees(small * (1.0 - math.cos(math.pi / CIRCLE_VERTICES))) + 1e-3,
            "area_fraction": round(_area_fraction(region), 6),
            "estimate": _estimate(region),
            "caps": [
                {
                    "landmark_id": None if ids is None else ids[k],
                    "lat": float(a),
                    "lon": float(b),
                    "radius_km": float(r * EARTH_MEAN_RADIUS_KM),
                }
                for k, (a, b, r) in enumerate(zip(lat_deg, lon_deg, radius_rad, strict=True))
            ],
        },
    }
