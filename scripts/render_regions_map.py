"""Render docs/img/regions.png: China as governed (outside:CN,HK,MO) and in+sea:DE.

Display only (simplified outlines, the margin drawn as a lon/lat buffer). Run from the
repository root: PYTHONPATH=src python scripts/render_regions_map.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import shapely

from lightfence.core.policy import claimed_region, countries_region, governed_region, sea_region
from lightfence.geo.governed import GOVERNED_ERROR_KM
from lightfence.geo.naturalearth import countries

OUT = Path(__file__).resolve().parents[1] / "docs/img/regions.png"


def draw(ax: Any, geom: Any, **kw: Any) -> None:
    for poly in getattr(geom, "geoms", [geom]):
        if poly.is_empty or not hasattr(poly, "exterior"):
            continue
        x, y = poly.exterior.xy
        ax.fill(x, y, **kw)


def main() -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 7), gridspec_kw={"width_ratios": [1.6, 1]})
    box1 = shapely.box(72, 3, 136, 54)
    for c in countries().values():
        if c.geometry.intersects(box1):
            g = shapely.simplify(shapely.intersection(c.geometry, box1), 0.03)
            draw(ax1, g, color="#dddddd", ec="#999999", lw=0.3)
    restricted = governed_region(("CN", "HK", "MO"))
    margin_deg = GOVERNED_ERROR_KM / 111.19
    land_s = shapely.simplify(restricted.land, 0.05)
    draw(ax1, shapely.buffer(land_s, margin_deg, quad_segs=2), color="#f4b6b6", lw=0)
    draw(ax1, land_s, color="#d62728", alpha=0.85, lw=0)
    for piece in restricted.pieces:
        draw(ax1, shapely.buffer(piece, margin_deg, quad_segs=2), color="#f4b6b6", lw=0)
    for piece in restricted.pieces:
        draw(ax1, piece, color="#7f0000", lw=0.2, ec="#7f0000")
    claim_only = claimed_region("CN").pieces
    only = [p for p in claim_only if p not in set(restricted.pieces)]
    draw(ax1, shapely.simplify(countries()["TW"].geometry, 0.02), color="#1f77b4", lw=0)
    for piece in only:
        draw(ax1, piece, color="#1f77b4", lw=0.2, ec="#1f77b4")
    ax1.set_xlim(72, 136)
    ax1.set_ylim(3, 54)
    ax1.set_aspect(1.2)
    ax1.set_title("outside:CN,HK,MO restricts China as governed")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color="#d62728"),
        plt.Rectangle((0, 0), 1, 1, color="#7f0000"),
        plt.Rectangle((0, 0), 1, 1, color="#f4b6b6"),
        plt.Rectangle((0, 0), 1, 1, color="#1f77b4"),
    ]
    ax1.legend(
        handles,
        [
            "Natural Earth land (CN, HK, MO)",
            "added: islands, internal waters, disputed areas, island-group boxes",
            f"margin: 12 nm territorial sea + 10 km data error = {GOVERNED_ERROR_KM:.1f} km",
            "Taiwan: not restricted, part of a declared CN (claims only)",
        ],
        loc="lower left",
        fontsize=7,
    )

    box2 = shapely.box(5.5, 52.8, 10.5, 55.6)
    for code, c in countries().items():
        if c.geometry.intersects(box2):
            g = shapely.intersection(c.geometry, box2)
            draw(ax2, g, color="#dddddd" if code != "DE" else "#2ca02c", ec="#999999", lw=0.3)
    sea = shapely.intersection(sea_region(("DE",)).geometry, box2)
    land = countries_region(("DE",)).geometry
    draw(ax2, shapely.difference(sea, land), color="#9ecae1", lw=0)
    ax2.set_xlim(5.5, 10.5)
    ax2.set_ylim(52.8, 55.6)
    ax2.set_aspect(1.7)
    ax2.set_title("in:DE (green, land) and in+sea:DE (+ blue)")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print(OUT, OUT.stat().st_size)


if __name__ == "__main__":
    main()
