"""The dashboard: static files (plain ES modules, vendored Leaflet) served by the verifier.

Everything it shows comes from the verifier's API with the signed-in token, so what a token may
see is decided by the API, never by the page. The one thing served here besides the files is the
country outline map (public geography, no token): Natural Earth 1:10m simplified for the screen.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from shapely.geometry import mapping

from lightfence.geo.naturalearth import NE_EDITION, countries

MOUNT = "/dashboard"
SIMPLIFY_DEG = 0.08
"""Outline tolerance for display (about 9 km): invisible at world zoom, a tenth of the bytes."""
COORD_DECIMALS = 3


def _rounded(coords: Any) -> Any:
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], float | int):
        return [round(float(c), COORD_DECIMALS) for c in coords]
    return [_rounded(c) for c in coords]


@cache
def countries_geojson() -> bytes:
    """Every Natural Earth country as a simplified GeoJSON FeatureCollection (cached).

    The source polygons are already split at the antimeridian (Russia, Fiji, the US Aleutians),
    so no ring crosses it and Leaflet draws them without a band across the map.
    """
    features = []
    for c in countries().values():
        geom = c.geometry.simplify(SIMPLIFY_DEG, preserve_topology=True)
        if geom.is_empty:
            continue
        g = mapping(geom)
        features.append(
            {
                "type": "Feature",
                "properties": {"code": c.code, "name": c.name},
                "geometry": {"type": g["type"], "coordinates": _rounded(g["coordinates"])},
            }
        )
    doc = {"type": "FeatureCollection", "properties": {"source": NE_EDITION}, "features": features}
    return json.dumps(doc, separators=(",", ":")).encode()


def mount_dashboard(app: FastAPI) -> None:
    static = resources.files("lightfence.dashboard").joinpath("static")

    @app.get(f"{MOUNT}/countries.geojson", include_in_schema=False)
    def _countries() -> Response:
        return Response(
            countries_geojson(),
            media_type="application/geo+json",
            headers={"cache-control": "public, max-age=86400"},
        )

    @app.get(MOUNT, include_in_schema=False)
    def _slash() -> RedirectResponse:
        return RedirectResponse(f"{MOUNT}/")

    app.mount(MOUNT, StaticFiles(directory=str(static), html=True), name="dashboard")
