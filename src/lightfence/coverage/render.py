"""Coverage outputs: self-describing GeoJSON, a PNG world map, a summary in numbers and words.

The map draws Natural Earth country outlines (lightfence.geo.naturalearth, shipped with a
registry package) with matplotlib; no tiles, nothing downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightfence.coverage.grid import Grid, cell_outline
from lightfence.coverage.inputs import Places
from lightfence.coverage.model import MAX_INFLATION, Coverage
from lightfence.geo.naturalearth import NE_EDITION, outline_rings

OUTLINE_SIMPLIFY_DEG = 0.05
"""Outlines are simplified to this tolerance for drawing only (about 5 km)."""


def coverage_geojson(grid: Grid, cov: Coverage, meta: dict[str, Any]) -> dict[str, Any]:
    """A FeatureCollection, one hexagon per cell with its verdict and slack.

    Properties: `cell` (H3 id), `verifiable` (VERIFIED at the modelled quantile),
    `max_inflation` (largest RTT / fibre-minimum factor still VERIFIED; 0: none; 64: 64 or
    more), `country`, `area_km2`. The collection's `lightfence` member says what was modelled.
    Cells across the antimeridian keep continuous longitudes (beyond 180) rather than being split.
    """
    features = []
    for i, cell in enumerate(grid.cells):
        features.append(
            {
                "type": "Feature",
                "id": cell,
                "geometry": {"type": "Polygon", "coordinates": [cell_outline(cell)]},
                "properties": {
                    "cell": cell,
                    "verifiable": bool(cov.verifiable[i]),
                    "max_inflation": round(float(cov.max_inflation[i]), 3),
                    "country": grid.country[i],
                    "area_km2": round(float(grid.area_km2[i]), 1),
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "lightfence": {
            "layer": "coverage",
            "h3_resolution": grid.resolution,
            "quantile": cov.quantile,
            "nearest_landmarks": cov.k,
            "max_inflation_cap": MAX_INFLATION,
            "properties": {
                "verifiable": "an honest device at the cell centre is VERIFIED at the quantile",
                "max_inflation": "largest RTT / fibre-minimum factor still VERIFIED (0: none)",
            },
            **meta,
        },
        "features": features,
    }


@dataclass(frozen=True)
class Summary:
    land_share: float
    """Share of the grid's land area that is verifiable."""
    sites_share: float
    sites_gpu_share: float
    hosts_share: float
    sites_label: str

    def lines(self) -> list[str]:
        return [
            f"land area verifiable: {self.land_share:.1%}",
            f"{self.sites_label} verifiable: {self.sites_share:.1%} "
            f"({self.sites_gpu_share:.1%} of their GPUs)",
            f"hosts of the shipped rtt-public data verifiable: {self.hosts_share:.1%}",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "land_area_share": round(self.land_share, 4),
            "sites": self.sites_label,
            "sites_share": round(self.sites_share, 4),
            "sites_gpu_share": round(self.sites_gpu_share, 4),
            "hosts_share": round(self.hosts_share, 4),
        }


def summarise(
    grid: Grid,
    cov: Coverage,
    sites: Places,
    sites_ok: np.ndarray[Any, Any],
    hosts_ok: Any,
    label: str,
) -> Summary:
    area = float(grid.area_km2.sum())
    gpus = float(sites.gpus.sum())
    return Summary(
        land_share=float(grid.area_km2[cov.verifiable].sum() / area) if area else 0.0,
        sites_share=float(np.mean(sites_ok)) if len(sites_ok) else 0.0,
        sites_gpu_share=float(sites.gpus[sites_ok].sum() / gpus) if gpus else 0.0,
        hosts_share=float(np.mean(hosts_ok)) if len(hosts_ok) else 0.0,
        sites_label=label,
    )


def _outlines(ax: Any) -> None:
    from matplotlib.collections import LineCollection

    segs = list(outline_rings(OUTLINE_SIMPLIFY_DEG))
    ax.add_collection(LineCollection(segs, colors="#444444", linewidths=0.3, zorder=3))


def render_png(
    grid: Grid,
    cov: Coverage,
    path: Path,
    title: str,
    landmarks: Places,
    added: Places | None = None,
) -> None:
    """A world map: verifiable cells coloured by slack, the rest grey; landmarks as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(14, 7), dpi=110)
    polys = [np.asarray(cell_outline(c)) for c in grid.cells]
    slack = np.clip(cov.max_inflation, 1.0, MAX_INFLATION)
    grey = PolyCollection(
        [p for p, ok in zip(polys, cov.verifiable, strict=True) if not ok],
        facecolors="#d9d9d9",
        edgecolors="none",
        zorder=1,
    )
    ax.add_collection(grey)
    ok_polys = [p for p, ok in zip(polys, cov.verifiable, strict=True) if ok]
    coloured = PolyCollection(
        ok_polys, cmap="viridis", norm=LogNorm(1.0, MAX_INFLATION), edgecolors="none", zorder=2
    )
    coloured.set_array(slack[cov.verifiable])
    ax.add_collection(coloured)
    _outlines(ax)
    ax.scatter(landmarks.lon, landmarks.lat, s=6, c="#d62728", zorder=4, label="landmarks")
    if added is not None and len(added):
        ax.scatter(
            added.lon, added.lat, s=40, marker="*", c="#ff7f0e", zorder=5, label="new landmarks"
        )
    fig.colorbar(coloured, ax=ax, shrink=0.6, label="max inflation still VERIFIED (× fibre min)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-60, 85)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    ax.text(1.0, -0.06, NE_EDITION, transform=ax.transAxes, ha="right", fontsize=6)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
