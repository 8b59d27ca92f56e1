"""Regions a policy can name: sets of countries, the world minus a set, a disc around a site.

A region answers three questions: does it contain a point (exactly, in its own data), where is
its boundary (a BoundaryIndex), and how far may its data be from the truth (`data_error_km`).
The verdict engine never shrinks or grows polygons; it grows the caps by `data_error_km`
instead, which is the same as growing the region it tests against and is exact on the sphere,
at the poles and across the antimeridian alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from lightfence.geo.boundary import BoundaryIndex, circle_vectors
from lightfence.geo.naturalearth import NE_BORDER_ERROR_KM, country
from lightfence.geo.sphere import Float64Array, check_lat_lon, unit_vectors
from lightfence.units import EARTH_MEAN_RADIUS_KM

SITE_POSITION_ERROR_KM = 0.1
"""Default survey error of a licensed site's coordinates (a building, not a city)."""


class Region(ABC):
    """A set of points on the Earth with an exact membership test and an indexed boundary."""

    name: str
    data_error_km: float

    @abstractmethod
    def contains(self, lat_deg: Float64Array, lon_deg: Float64Array) -> NDArray[np.bool_]:
        """Membership of each point in the region's own data (not yet allowing for its error)."""

    @property
    @abstractmethod
    def boundary(self) -> BoundaryIndex: ...

    def complement(self) -> Region:
        return Complement(self)

    def to_geojson(self) -> dict[str, Any]:
        """The region's outline for display."""
        return {"type": "GeometryCollection", "geometries": []}

    def classify(
        self, lat_deg: Float64Array, lon_deg: Float64Array
    ) -> tuple[NDArray[np.bool_], Float64Array]:
        """For each point: inside?, and a lower bound on its angle to the boundary (radians).

        Results are memoised per point: landmarks repeat across millions of devices.
        """
        memo = self._memo
        keys = list(zip(lat_deg.tolist(), lon_deg.tolist(), strict=True))
        missing = [i for i, key in enumerate(keys) if key not in memo]
        if missing:
            lat_m = lat_deg[missing]
            lon_m = lon_deg[missing]
            inside = self.contains(lat_m, lon_m)
            dist = self.boundary.distance_lower_bound_rad(unit_vectors(lat_m, lon_m))
            for j, i in enumerate(missing):
                memo[keys[i]] = (bool(inside[j]), float(dist[j]))
        pairs = [memo[key] for key in keys]
        return (
            np.fromiter((p[0] for p in pairs), dtype=bool, count=len(pairs)),
            np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs)),
        )

    @cached_property
    def _memo(self) -> dict[tuple[float, float], tuple[bool, float]]:
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _normalise_lon(lon_deg: Float64Array) -> Float64Array:
    return np.asarray((np.asarray(lon_deg, dtype=np.float64) + 180.0) % 360.0 - 180.0)


class Countries(Region):
    """The union of one or more countries (Natural Earth 1:10m admin-0 land polygons).

    Land only: the allowed region of `in:`. Restricted sets and declared countries use
    geo.governed.Governed (land, waters, islands, disputed areas, territorial sea)."""

    def __init__(self, codes: Iterable[str]) -> None:
        found = [country(code) for code in codes]
        if not found:
            raise ValueError("a country set needs at least one country code")
        self.codes: tuple[str, ...] = tuple(sorted({c.code for c in found}))
        self.name = ",".join(self.codes)
        self.data_error_km = NE_BORDER_ERROR_KM
        geoms = [c.geometry for c in found]
        self._land = geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)
        shapely.prepare(self._land)
        self._geometry = self._land

    def contains(self, lat_deg: Float64Array, lon_deg: Float64Array) -> NDArray[np.bool_]:
        lat = np.asarray(lat_deg, dtype=np.float64)
        lon = _normalise_lon(lon_deg)
        return np.asarray(shapely.intersects_xy(self._geometry, lon, lat))

    @cached_property
    def boundary(self) -> BoundaryIndex:
        return BoundaryIndex.from_rings(polygon_rings(self._geometry))

    @property
    def geometry(self) -> Any:
        return self._geometry

    def to_geojson(self) -> dict[str, Any]:
        return dict(shapely.geometry.mapping(self._geometry))


def polygon_rings(geom: Any) -> list[tuple[Float64Array, Float64Array]]:
    """Every ring (exteriors and holes) of a (Multi)Polygon or collection, as lon, lat arrays."""
    rings: list[tuple[Float64Array, Float64Array]] = []
    for poly in getattr(geom, "geoms", [geom]):
        if poly.is_empty:
            continue
        if not hasattr(poly, "exterior"):
            rings.extend(polygon_rings(poly))  # a nested collection
            continue
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords, dtype=np.float64)
            rings.append((xy[:, 0], xy[:, 1]))
    return rings


class Complement(Region):
    """Everything on Earth except `inner`: the sea and every other country included."""

    def __init__(self, inner: Region) -> None:
        self.inner = inner
        self.name = f"outside {inner.name}"
        self.data_error_km = inner.data_error_km

    def contains(self, lat_deg: Float64Array, lon_deg: Float64Array) -> NDArray[np.bool_]:
        return ~self.inner.contains(lat_deg, lon_deg)

    @property
    def boundary(self) -> BoundaryIndex:
        return self.inner.boundary

    def complement(self) -> Region:
        return self.inner


class Disc(Region):
    """All points within `radius_km` (great-circle) of a licensed site."""

    def __init__(
        self,
        lat_deg: float,
        lon_deg: float,
        radius_km: float,
        position_error_km: float = SITE_POSITION_ERROR_KM,
    ) -> None:
        check_lat_lon(lat_deg, lon_deg)
        if not (np.isfinite(radius_km) and radius_km > 0.0):
            raise ValueError(f"disc radius {radius_km} km must be positive")
        if not (np.isfinite(position_error_km) and position_error_km >= 0.0):
            raise ValueError(f"site position error {position_error_km} km must be >= 0")
        self.lat = float(lat_deg)
        self.lon = float(lon_deg)
        self.radius_km = float(radius_km)
        self.name = f"within {radius_km:g} km of ({lat_deg:.4f}, {lon_deg:.4f})"
        self.data_error_km = float(position_error_km)
        self._centre = unit_vectors(self.lat, self.lon)

    @property
    def radius_rad(self) -> float:
        return min(self.radius_km / EARTH_MEAN_RADIUS_KM, np.pi)

    def contains(self, lat_deg: Float64Array, lon_deg: Float64Array) -> NDArray[np.bool_]:
        v = unit_vectors(lat_deg, lon_deg).reshape(-1, 3)
        # Compare cosines: exact enough (1e-16) for a membership test that the engine
        # never trusts closer to the boundary than the boundary spacing.
        return np.asarray(v @ self._centre >= np.cos(self.radius_rad))

    @cached_property
    def boundary(self) -> BoundaryIndex:
        if self.radius_rad >= np.pi:
            return BoundaryIndex(np.zeros((0, 3)))
        return BoundaryIndex(circle_vectors(self._centre, self.radius_rad))
