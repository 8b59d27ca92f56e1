"""The evaluation as a Markdown report with three plots (matplotlib, no network, no tiles)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from lightfence.core.kinds import VerdictKind
from lightfence.eval.run import EvalResult, restricted_codes
from lightfence.geo.naturalearth import NE_EDITION, outline_rings
from lightfence.geo.regions import Countries
from lightfence.geo.sphere import unit_vectors
from lightfence.units import EARTH_MEAN_RADIUS_KM

VERDICT_COLOURS = {
    VerdictKind.VERIFIED: "#1a9850",
    VerdictKind.REFUTED: "#d73027",
    VerdictKind.INCONSISTENT: "#7b3294",
    VerdictKind.UNVERIFIED: "#999999",
}


def _error_cdf(result: EvalResult, path: Path) -> None:
    per_target = result.estimates["per_target"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, label in (
        ("error_km", "lightfence estimate (CBG, bestline)"),
        ("cbg_error_km", "plain CBG, 2/3 c, centroid"),
        ("shortest_ping_error_km", "shortest ping"),
    ):
        errors = [t[key] for t in per_target]
        xs = np.sort(np.asarray(errors))
        ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("error, km")
    ax.set_ylabel("share of targets")
    ax.set_title("Position estimate error (display only, never a verdict)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _border_distance_km(result: EvalResult) -> np.ndarray:
    region = Countries(restricted_codes(result.policy))
    lat = np.array([c.truth.lat for c in result.cases])
    lon = np.array([c.truth.lon for c in result.cases])
    dist = region.boundary.distance_lower_bound_rad(unit_vectors(lat, lon).reshape(-1, 3))
    return np.asarray(dist * EARTH_MEAN_RADIUS_KM)


def _rate_by_border_distance(result: EvalResult, path: Path) -> list[tuple[str, int, float]]:
    dist = _border_distance_km(result)
    verified = np.array([v is VerdictKind.VERIFIED for v in result.verdicts])
    edges = [0, 1000, 2000, 4000, 8000, 20000]
    rows = []
    for lo, hi in itertools.pairwise(edges):
        sel = (dist >= lo) & (dist < hi)
        if sel.any():
            rows.append((f"{lo}–{hi}", int(sel.sum()), float(verified[sel].mean())))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.bar([r[0] for r in rows], [r[2] for r in rows], color="#1a9850")
    for i, r in enumerate(rows):
        ax.text(i, r[2] + 0.02, f"n={r[1]}", ha="center")
    ax.set_ylim(0, 1.1)
    ax.set_xlabel(
        f"distance to the nearest border of {','.join(restricted_codes(result.policy))}, km"
    )
    ax.set_ylabel("share VERIFIED")
    ax.set_title("Verification rate against distance to the restricted region")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return rows


def draw_countries(ax: Axes) -> None:
    """Country outlines from the Natural Earth data, simplified for drawing only."""
    for ring in outline_rings(0.1):
        ax.fill(ring[:, 0], ring[:, 1], color="#f2f2f2", ec="#bbbbbb", lw=0.3)


def _map(result: EvalResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(11, 5.5))
    draw_countries(ax)
    for kind, colour in VERDICT_COLOURS.items():
        pts = [c.truth for c, v in zip(result.cases, result.verdicts, strict=True) if v is kind]
        if pts:
            ax.scatter(
                [p.lon for p in pts],
                [p.lat for p in pts],
                s=14,
                c=colour,
                label=f"{kind.value} ({len(pts)})",
                zorder=3,
                edgecolors="black",
                linewidths=0.3,
            )
    ax.set_xlim(-180, 180)
    ax.set_ylim(-60, 85)
    ax.set_aspect("equal")
    ax.set_title(f"Verdicts under {result.policy.text} (bound: {result.policy.bound.value})")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: EvalResult, outdir: Path) -> Path:
    """Write report.md, three PNGs and summary.json into `outdir`; return the report's path."""
    outdir.mkdir(parents=True, exist_ok=True)
    summary = result.to_json()
    _error_cdf(result, outdir / "error_cdf.png")
    rows = _rate_by_border_distance(result, outdir / "rate_by_border_distance.png")
    _map(result, outdir / "verdict_map.png")
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    counts = Counter(v.value for v in result.verdicts)
    lines = [
        "# lightfence evaluation",
        "",
        f"Policy `{result.policy.text}`, bound `{result.policy.bound.value}`, landmark survey "
        f"error {result.landmark_error_km:g} km, {len(result.cases)} targets (leave-one-out). "
        f"Borders: {NE_EDITION}.",
        "",
        "| measure | value |",
        "| --- | --- |",
        *[f"| {k.value} | {counts.get(k.value, 0)} |" for k in VerdictKind],
        f"| false VERIFIED (must be 0) | {summary['false_verified']} |",
        f"| false REFUTED | {summary['false_refuted']} |",
        f"| relay trials / false VERIFIED | {summary['relay_trials']} / "
        f"{summary['relay_false_verified']} |",
        f"| lying landmarks tolerated | {summary['liars']} "
        f"({', '.join(f'f = {f}: {n}' for f, n in summary['tolerated_liars'].items())}) |",
        f"| estimate error median / p90 (outer folds of nested CV), km | "
        f"{summary['estimate_median_km']:.0f} / {summary['estimate_p90_km']:.0f} |",
        f"| shortest-ping median, km | {summary['baseline_shortest_ping_median_km']:.0f} |",
        f"| plain CBG (2/3 c) median / p90, km | {summary['baseline_cbg_median_km']:.0f} / "
        f"{summary['baseline_cbg_p90_km']:.0f} |",
        "",
        "## Estimate error",
        "",
        "![error CDF](error_cdf.png)",
        "",
        "## Verification rate against distance to the restricted region",
        "",
        "| distance band, km | targets | share VERIFIED |",
        "| --- | --- | --- |",
        *[f"| {band} | {n} | {rate:.0%} |" for band, n, rate in rows],
        "",
        "![rate](rate_by_border_distance.png)",
        "",
        "## Verdict map",
        "",
        "![map](verdict_map.png)",
        "",
        "Estimates are display-only: they come from calibrated delay models (CBG bestlines) and",
        "never feed a verdict. Verdicts use only the speed-of-light bound. Estimate errors are",
        "from the outer folds of a nested cross-validation grouped by site: each target was",
        "estimated with settings chosen without it (docs/physics.md, eval/crossval.py).",
    ]
    path = outdir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
