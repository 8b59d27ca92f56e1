"""Countries as they are governed, and countries' land with their territorial sea.

Natural Earth's land polygons (geo.naturalearth) leave out what a country governs beyond its
mapped coast: internal waters, the 12-nautical-mile territorial sea, small islands, and disputed
areas it claims or controls. Two regions are built on them here (docs/regions.md):

- `Governed`: land, plus the shipped pieces in data/governed (GSHHG islands, internal waters by a
  closing of land and islands, Natural Earth disputed areas, boxes around island groups), with
  `data_error_km` = the land's error + 12 nm. The engine grows caps by `data_error_km`, so the
  territorial sea is exact on the sphere ("F meets land grown by d" = "F grown by d meets land").
  Used for restricted sets (`outside:`) and for every declared country (REFUTED). Both may only
  err larger, and every approximation here does.
- `LandAndSea`: an *allowed* region with the territorial sea opt-in (`in+sea:`). Growing does
  not work there (the engine can only shrink an allowed region), so it is a real polygon: land
  buffered by a lon/lat radius whose true length never exceeds 12 nm, minus everything within
  12 nm of another country. It may only err smaller, and does.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable
from functools import cache, cached_property
from importlib import resources
from typing import Any, Literal

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import box, shape

from lightfence.geo.boundary import BoundaryIndex
from lightfence.geo.naturalearth import NE_BORDER_ERROR_KM, countries
from lightfence.geo.regions import Countries, polygon_rings
from lightfence.geo.sphere import Float64Array
from lightfence.units import EARTH_MEAN_RADIUS_KM

NAUTICAL_MILE_KM = 1.852
TERRITORIAL_SEA_KM = 12 * NAUTICAL_MILE_KM
"""UNCLOS art. 3: the territorial sea reaches 12 nautical miles from the baselines (22.224 km)."""

GOVERNED_ERROR_KM = NE_BORDER_ERROR_KM + TERRITORIAL_SEA_KM
"""The margin of a governed region: the land data's error plus the territorial sea."""

SEA_BUFFER_DEG = 0.1995
"""Lon/lat buffer radius of `in+sea:`. A planar lon/lat step of d degrees is at most
R * d * pi / 180 km long on the sphere (cos(lat) <= 1 shrinks only the east-west part), so this
buffer never reaches more than 22.18 km (< 12 nm) from the land; it reaches 22.18 * cos(lat) km
east-west."""

CLAIMS_INCLUDE: dict[str, tuple[str, ...]] = {"CN": ("TW",)}
"""Declared countries whose claimed region also holds another region (docs/regions.md, Taiwan):
a device declaring CN in Taiwan is not REFUTED. Restricted sets do not follow this (`outside:CN`
does not restrict Taiwan; export-control rules list Taiwan separately)."""

SHARED_NEAREST_FACTOR = 2.0
"""`in+sea:` treats an island shared with a neighbour as the target's own (no keep-out around
it) only if the neighbour's land is at least this many times farther away than the target's."""

Purpose = Literal["restricted", "claim"]

_PARTS = "governed/parts.geojson.gz"


@cache
def governed_parts() -> dict[str, tuple[Any, ...]]:
    """The shipped pieces (lon/lat shapely geometries) per country code."""
    ref = resources.files("lightfence.data").joinpath(_PARTS)
    with resources.as_file(ref) as path, gzip.open(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    out: dict[str, list[Any]] = {}
    for feature in doc["features"]:
        geom = shape(feature["geometry"])
        for code in feature["properties"]["codes"]:
            out.setdefault(code, []).append(geom)
    return {code: tuple(geoms) for code, geoms in out.items()}


class Governed(Countries):
    """Countries as governed: land, islands, internal waters, disputed areas, territorial sea.

    The territorial sea is not in the polygons: it is part of `data_error_km`, which the engine
    adds to every cap. `contains` therefore answers for land and the shipped pieces only.
    """

    def __init__(self, codes: Iterable[str], purpose: Purpose = "restricted") -> None:
        super().__init__(codes)
        self.purpose: Purpose = purpose
        self.data_error_km = GOVERNED_ERROR_KM
        table = countries()
        extra_codes = list(self.codes)
        extras: list[Any] = []
        if purpose == "claim":
            for code in self.codes:
                for other in CLAIMS_INCLUDE.get(code, ()):
                    extra_codes.append(other)
                    extras.append(table[other].geometry)
        parts = governed_parts()
        for code in dict.fromkeys(extra_codes):
            extras.extend(parts.get(code, ()))
        # Pieces overlap (an island near two countries, a box over islands): they are kept
        # apart in a tree, not unioned (a union of thousands of pieces costs seconds per code).
        self._pieces = np.array(list(dict.fromkeys(extras)), dtype=object)
        self._tree = shapely.STRtree(self._pieces)

    def contains(self, lat_deg: Float64Array, lon_deg: Float64Array) -> NDArray[np.bool_]:
        inside = super().contains(lat_deg, lon_deg)
        if len(self._pieces) == 0:
            return inside
        lat = np.asarray(lat_deg, dtype=np.float64).reshape(-1)
        lon = ((np.asarray(lon_deg, dtype=np.float64) + 180.0) % 360.0 - 180.0).reshape(-1)
        hits = self._tree.query(shapely.points(lon, lat), predicate="intersects")
        out = np.array(inside, dtype=bool).reshape(-1)
        out[hits[0]] = True
        return out.reshape(np.shape(inside))

    @cached_property
    def boundary(self) -> BoundaryIndex:
        # Land and pieces overlap; their rings inside the union are extra vertices, which only
        # make the engine doubt more (never a wrong VERIFIED or REFUTED).
        rings = polygon_rings(self._land)
        for piece in self._pieces:
            rings.extend(polygon_rings(piece))
        return BoundaryIndex.from_rings(rings)

    @property
    def land(self) -> Any:
        """Natural Earth land polygons alone."""
        return self._land

    @property
    def pieces(self) -> tuple[Any, ...]:
        """The shipped pieces beyond the land (islands, internal waters, disputed areas)."""
        return tuple(self._pieces)

    @cached_property
    def geometry(self) -> Any:
        """Land and pieces as one geometry (display and the test reference; not the engine)."""
        geom = shapely.union_all([self._land, *self._pieces])
        shapely.prepare(geom)
        return geom

    def to_geojson(self) -> dict[str, Any]:
        return dict(shapely.geometry.mapping(self.geometry))


def _others_near(codes: tuple[str, ...], land: Any, area: Any) -> list[Any]:
    """Land and shipped pieces of every other country that touch `area`.

    A piece shared with the target (an island attributed by proximity to several countries)
    counts as another country's unless it is at most half as far from the target's land as
    from every other owner's land (SHARED_NEAREST_FACTOR)."""
    table = countries()
    parts = governed_parts()
    out = [c.geometry for code, c in table.items() if code not in codes]
    own = {id(g) for code in codes for g in parts.get(code, ())}
    for code, geoms in parts.items():
        if code not in codes:
            out.extend(g for g in geoms if id(g) not in own)
    for code in codes:
        for geom in parts.get(code, ()):
            owners = [o for o in _owners().get(id(geom), ()) if o not in codes]
            if not owners or not geom.intersects(area):
                continue
            d_target = shapely.distance(geom, land)
            d_other = min(shapely.distance(geom, table[o].geometry) for o in owners)
            if d_target * SHARED_NEAREST_FACTOR > d_other:
                out.append(geom)
    return [g for g in out if g.intersects(area)]


@cache
def _owners() -> dict[int, tuple[str, ...]]:
    """Which codes share each shipped piece (by object identity)."""
    seen: dict[int, list[str]] = {}
    for code, geoms in governed_parts().items():
        for geom in geoms:
            seen.setdefault(id(geom), []).append(code)
    return {k: tuple(v) for k, v in seen.items()}


class LandAndSea(Countries):
    """Allowed region `in+sea:`: land plus the territorial sea, erring smaller.

    The land (Natural Earth) is buffered by SEA_BUFFER_DEG (never more than 12 nm on the
    sphere), then everything that may lie within 12 nm of another country's land or shipped
    pieces is cut away (the equidistance line is never crossed). The engine then shrinks the
    result by the land's data error, as for `in:`.
    """

    def __init__(self, codes: Iterable[str]) -> None:
        super().__init__(codes)
        land = self._land
        grown = shapely.buffer(land, SEA_BUFFER_DEG, quad_segs=8)
        x0, y0, x1, y1 = grown.bounds
        lat_max = min(max(abs(y0), abs(y1)) + 1.0, 89.0)
        # 12 nm of another country, as a lon/lat radius that covers it at every latitude here.
        other_deg = math.degrees(TERRITORIAL_SEA_KM / EARTH_MEAN_RADIUS_KM) / math.cos(
            math.radians(lat_max)
        )
        area = box(x0 - other_deg, y0 - other_deg, x1 + other_deg, y1 + other_deg)
        others = _others_near(self.codes, land, area)
        sea = grown
        if others:
            keep_out = shapely.buffer(shapely.union_all(others), other_deg * 1.01, quad_segs=8)
            sea = shapely.difference(grown, keep_out)
        self._geometry = shapely.union_all([land, sea])
        shapely.prepare(self._geometry)
        self.name = f"{','.join(self.codes)} with its territorial sea"
        self.data_error_km = NE_BORDER_ERROR_KM
