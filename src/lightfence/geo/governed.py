"""Countries as they are governed, and countries' land with their territorial sea.

Natural Earth's land polygons (geo.naturalearth) leave out what a country governs beyond its
mapped coast: internal waters, the 12-nautical-mile territorial sea, small islands, and disputed
areas it claims or controls. Two regions are built on them here (docs/regions.md):

- `Governed`: land, plus the shipped pieces in data/governed (GSHHG islands, internal waters by a
  closing of land and islands, Natural Earth disputed areas, boxes around island groups), plus
  the territorial sea. For a restricted set (`outside:`) the sea is a polygon: everything within
  a lon/lat radius that covers 12 nm at every latitude of the country, less other countries'
  land, so a land border keeps the land's own 10 km error and no more (`territorial_sea`). Where
  a lon/lat buffer cannot be trusted (beyond SEA_PIECE_MAX_LAT_DEG, across the antimeridian),
  and for every declared country (REFUTED; built for each code on first use, so it stays cheap),
  the sea is a margin instead: `data_error_km` = the land's error + 12 nm, exact on the sphere
  ("F comes within d of the land" = "F grown by d meets the land") but 22 km too wide on land
  borders. Both may only err larger, and every approximation here does.
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

SEA_BUFFER_DEG = 0.1985
"""Lon/lat buffer radius of `in+sea:`. A planar lon/lat step of d degrees is at most
111.70 * d km long on the WGS84 ellipsoid (a degree of latitude is longest at the poles,
111.69 km; cos(lat) <= 1 shrinks only the east-west part), so this buffer never reaches more
than 22.17 km (< 12 nm) from the land; it reaches about 22.1 * cos(lat) km east-west."""

LAT_DEG_KM_MIN = 110.574
"""The shortest degree of latitude on WGS84 (at the equator: M = 6335.44 km)."""

LON_DEG_KM_AT_EQUATOR = 111.320
"""A degree of longitude at the equator; at latitude phi it is at least this times cos(phi)."""

SEA_PIECE_MAX_LAT_DEG = 70.0
"""Restricted regions reaching beyond this latitude keep the territorial sea as a margin: a
lon/lat buffer that covers 12 nm there is several times too wide in latitude."""

BUFFER_CHORD_FACTOR = 1.0 / math.cos(math.pi / 32) * 1.001
"""shapely draws a buffer's round joins as chords (8 per quarter circle), which cut up to
1 - cos(pi/32) inside the true radius: the radius is grown by that much to cover it."""

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
    ref = resources.files("lightfence").joinpath("data", *_PARTS.split("/"))
    with resources.as_file(ref) as path, gzip.open(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    out: dict[str, list[Any]] = {}
    for feature in doc["features"]:
        geom = shape(feature["geometry"])
        for code in feature["properties"]["codes"]:
            out.setdefault(code, []).append(geom)
    return {code: tuple(geoms) for code, geoms in out.items()}


def territorial_sea(own: Any, own_codes: Iterable[str]) -> Any | None:
    """A polygon holding every point within 12 nm (on WGS84) of `own` that is not another
    country's land, or None where a lon/lat buffer cannot be trusted (SEA_PIECE_MAX_LAT_DEG, the
    antimeridian).

    A path of s km moves at most s / LAT_DEG_KM_MIN degrees of latitude and
    s / (LON_DEG_KM_AT_EQUATOR cos(lat)) of longitude per km, so its lon/lat image is at most
    s / min(those) long: a planar buffer of 12 nm over that least km-per-degree (at the highest
    latitude the buffer reaches) covers the whole territorial sea, ignoring equidistance (which
    only over-restricts). Other countries' land is cut out: their coast is as good as the land
    data, and the region's own 10 km error covers that.
    """
    x0, y0, x1, y1 = own.bounds
    lat_max = max(abs(y0), abs(y1)) + 1.0
    if lat_max > SEA_PIECE_MAX_LAT_DEG or x0 <= -179.0 or x1 >= 179.0:
        return None
    km_per_deg = min(LAT_DEG_KM_MIN, LON_DEG_KM_AT_EQUATOR * math.cos(math.radians(lat_max)))
    radius_deg = TERRITORIAL_SEA_KM / km_per_deg * BUFFER_CHORD_FACTOR
    grown = shapely.buffer(own, radius_deg, quad_segs=8)
    area = box(*grown.bounds)
    skip = set(own_codes)
    others = [
        c.geometry
        for code, c in countries().items()
        if code not in skip and c.geometry.intersects(area)
    ]
    if others:
        grown = shapely.difference(grown, shapely.union_all(others))
    return grown


class Governed(Countries):
    """Countries as governed: land, islands, internal waters, disputed areas, territorial sea.

    For a restricted set the territorial sea is a polygon piece (`territorial_sea`); for a
    declared country, or where that cannot be built, it is part of `data_error_km`, which the
    engine adds around the region. `contains` answers for land and pieces only.
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
        unique = list(dict.fromkeys(extras))
        self.sea_as_margin = True
        """Whether the territorial sea is in `data_error_km` rather than a piece."""
        if purpose == "restricted":
            sea = territorial_sea(shapely.union_all([self._land, *unique]), extra_codes)
            if sea is not None and not sea.is_empty:
                unique.append(sea)
                self.sea_as_margin = False
                self.data_error_km = NE_BORDER_ERROR_KM
        self._pieces = np.array(unique, dtype=object)
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
