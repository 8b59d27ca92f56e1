"""`lightfence coverage` and `lightfence plan`: where landmarks prove location, and where to add."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lightfence.core.policy import Policy, PolicyError, parse_policy
from lightfence.core.robust import AUTO_LIARS_MIN_LANDMARKS, DEFAULT_LIARS, check_liars
from lightfence.coverage.grid import DEFAULT_RESOLUTION, MAX_RESOLUTION, Grid, land_grid
from lightfence.coverage.inputs import (
    InputError,
    Places,
    read_candidates,
    read_landmarks,
    read_sites,
    shipped_datacentre_cities,
    shipped_hosts,
)
from lightfence.coverage.model import (
    DEFAULT_K,
    DEFAULT_QUANTILE,
    Coverage,
    evaluate,
    nearest_landmarks,
    quantile_rtt_ms,
    verified,
    work_units,
)
from lightfence.coverage.planner import Step, plan
from lightfence.coverage.render import coverage_geojson, render_png, summarise
from lightfence.units import Bound

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

console = Console(stderr=True)

SAME_HOST_KM = 1.0
"""A shipped host is not its own landmark: landmarks closer than this are left out for it."""

LandmarksOpt = Annotated[
    Path, typer.Option("--landmarks", help="CSV with id,lat,lon (rtt-public landmarks.csv works).")
]
PolicyOpt = Annotated[
    str,
    typer.Option(
        "--policy",
        help="outside:CN,HK,MO | in:DE | in+sea:DE | within:LAT,LON,KM | in-declared-country[+sea]",
    ),
]
QuantileOpt = Annotated[
    float,
    typer.Option(
        "--inflation", min=0.0, max=1.0, help="Network quantile of RTT inflation (0.5: median)."
    ),
]
ResolutionOpt = Annotated[
    int, typer.Option("--resolution", min=0, max=MAX_RESOLUTION, help="H3 grid resolution.")
]
KOpt = Annotated[int, typer.Option("--k", min=1, help="Nearest landmarks modelled per point.")]
BoundOpt = Annotated[Bound, typer.Option("--bound", help="Speed bound of the verdicts.")]
LiarsOpt = Annotated[
    str,
    typer.Option(
        "--liars",
        help="Lying landmarks each verdict must survive: a count, or 'auto' (the verifier's "
        "default: 1 with at least 4 landmarks, else 0).",
    ),
]


def _load(what: str, reader: Any, path: Path) -> Places:
    try:
        places: Places = reader(path)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--{what}") from None
    return places


def _policy(text: str, bound: Bound, liars: str) -> Policy:
    try:
        check_liars(liars)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--liars") from None
    try:
        # The verifier's own rule by default: a plan at f = 0 would promise VERIFIED verdicts
        # that a deployment tolerating one liar does not give.
        return parse_policy(text, bound, liars)
    except (PolicyError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from None


def _measured(data: Path, landmarks: Places, pol: Policy) -> dict[str, Any]:
    """The data set's targets on their measured RTTs from these landmarks (matched by id): the
    figure `lightfence eval` gives for the same data, landmarks and policy."""
    from lightfence.eval.verdicts import measured_verified
    from lightfence.rttdata import DatasetError, load_dataset

    try:
        dataset = load_dataset(data)
    except DatasetError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from None
    matched = set(landmarks.names) & set(dataset.landmark_ids)
    if not matched:
        console.print(
            f"warning: no landmark id of the --landmarks file is a landmark of {data}: "
            "every measured target has no landmark",
            markup=False,
            soft_wrap=True,
        )
    ok, total, tolerated = measured_verified(dataset, pol, set(landmarks.names))
    return {
        "data": str(data),
        "landmarks_matched": len(matched),
        "targets": total,
        "verified": ok,
        "verified_share": round(ok / total, 4) if total else 0.0,
        "tolerated_liars": {str(f): tolerated.count(f) for f in sorted(set(tolerated))},
    }


def _liars_note(pol: Policy) -> str:
    if pol.liars == "auto":
        return f"f = 1 with at least {AUTO_LIARS_MIN_LANDMARKS} landmarks, else 0"
    return f"f = {pol.liars}"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    )


def _map(
    grid: Grid, landmarks: Places, policy: Policy, quantile: float, k: int, label: str
) -> Coverage:
    with _progress() as bar:
        task = bar.add_task(label, total=work_units(len(grid)))
        return evaluate(
            grid.lat,
            grid.lon,
            grid.country,
            landmarks,
            policy,
            quantile,
            k,
            progress=lambda n: bar.advance(task, n),
        )


def _points_ok(
    places: Places,
    landmarks: Places,
    policy: Policy,
    quantile: float,
    k: int,
    exclude_km: float = 0.0,
) -> NDArray[np.bool_]:
    nb = nearest_landmarks(places.lat, places.lon, landmarks, k, exclude_km)
    return verified(landmarks, nb, quantile_rtt_ms(nb, quantile), policy, places.country)


def _out_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot create {out}: {exc.strerror}", param_hint="--out"
        ) from None
    return out


def _write_map(
    out: Path,
    stem: str,
    grid: Grid,
    cov: Coverage,
    meta: dict[str, Any],
    title: str,
    landmarks: Places,
    added: Places | None = None,
) -> None:
    (out / f"{stem}.geojson").write_text(json.dumps(coverage_geojson(grid, cov, meta)))
    render_png(grid, cov, out / f"{stem}.png", title, landmarks, added)


@commands.command()
def coverage(
    landmarks: LandmarksOpt,
    policy: PolicyOpt,
    inflation: QuantileOpt = DEFAULT_QUANTILE,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("coverage-out"),
    sites: Annotated[
        Path | None,
        typer.Option("--sites", help="Sites CSV for the summary (default: shipped DC cities)."),
    ] = None,
    resolution: ResolutionOpt = DEFAULT_RESOLUTION,
    k: KOpt = DEFAULT_K,
    bound: BoundOpt = Bound.VACUUM,
    liars: LiarsOpt = str(DEFAULT_LIARS),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Also judge this rtt-public-style data set's targets on their measured RTTs "
            "(the figure `lightfence eval` gives).",
        ),
    ] = None,
) -> None:
    """Map where an honest device would be VERIFIED with these landmarks, and with what slack."""
    pol = _policy(policy, bound, liars)
    lms = _load("landmarks", read_landmarks, landmarks)
    site_list = _load("sites", read_sites, sites) if sites else shipped_datacentre_cities()
    label = f"sites of {sites.name}" if sites else "listed data-centre cities"
    out = _out_dir(out)
    with console.status("building the land grid"):
        grid = land_grid(resolution)
    cov = _map(grid, lms, pol, inflation, k, f"coverage of {len(grid)} cells")
    with console.status("sites and hosts"):
        sites_ok = _points_ok(site_list, lms, pol, inflation, k)
        hosts = shipped_hosts()
        hosts_ok = _points_ok(hosts, lms, pol, inflation, k, SAME_HOST_KM)
    summary = summarise(grid, cov, site_list, sites_ok, hosts_ok, label)
    meta: dict[str, Any] = {
        "policy": pol.describe(),
        "liars": pol.liars,
        "landmarks": len(lms),
        "summary": summary.to_dict(),
    }
    if data is not None:
        with console.status("measured targets"):
            meta["measured"] = _measured(data, lms, pol)
    title = f"{pol.describe()}: {len(lms)} landmarks, network quantile {inflation:g}"
    with console.status("writing the map"):
        _write_map(out, "coverage", grid, cov, meta, title, lms)
        (out / "summary.json").write_text(json.dumps(meta, indent=2) + "\n")
    typer.echo(f"lying landmarks tolerated: {pol.liars} ({_liars_note(pol)})")
    for line in summary.lines():
        typer.echo(line)
    if "measured" in meta:
        m = meta["measured"]
        typer.echo(
            f"targets of {data} VERIFIED on their measured RTTs: {m['verified']} of "
            f"{m['targets']} ({m['verified_share']:.1%})"
        )
    typer.echo(f"wrote {out / 'coverage.geojson'}, {out / 'coverage.png'}, {out / 'summary.json'}")


@commands.command("plan")
def plan_cmd(
    landmarks: LandmarksOpt,
    policy: PolicyOpt,
    sites: Annotated[Path, typer.Option("--sites", help="CSV with name,lat,lon,country,gpus.")],
    budget: Annotated[int, typer.Option("--budget", min=0, help="New landmarks to place.")],
    candidates: Annotated[
        Path | None,
        typer.Option("--candidates", help="CSV name,lat,lon (default: shipped DC cities)."),
    ] = None,
    inflation: QuantileOpt = DEFAULT_QUANTILE,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("plan-out"),
    maps: Annotated[bool, typer.Option("--maps/--no-maps", help="Draw before/after maps.")] = True,
    resolution: ResolutionOpt = DEFAULT_RESOLUTION,
    k: KOpt = DEFAULT_K,
    bound: BoundOpt = Bound.VACUUM,
    liars: LiarsOpt = str(DEFAULT_LIARS),
) -> None:
    """Choose new landmark positions that make the most GPUs verifiable, greedily."""
    pol = _policy(policy, bound, liars)
    lms = _load("landmarks", read_landmarks, landmarks)
    site_list = _load("sites", read_sites, sites)
    cands = _load("candidates", read_candidates, candidates) if candidates else None
    cands = cands or shipped_datacentre_cities()
    out = _out_dir(out)
    table = Table(title=f"greedy placement, {pol.describe()}, quantile {inflation:g}")
    for col in ("step", "new landmark", "lat", "lon", "+sites", "+GPUs", "GPUs verified"):
        table.add_column(col, justify="left" if col == "new landmark" else "right")
    total = float(site_list.gpus.sum())

    def show(step: Step) -> None:
        n = len(table.rows) + 1
        console.print(f"step {n}: {step.candidate} +{step.gain_gpus:g} GPUs")
        table.add_row(
            str(n),
            step.candidate,
            f"{step.lat:.2f}",
            f"{step.lon:.2f}",
            str(step.gain_sites),
            f"{step.gain_gpus:g}",
            f"{step.verified_gpus:g} ({step.verified_gpus / total:.0%})",
        )

    with console.status(f"placing up to {budget} landmarks among {len(cands)} candidates"):
        result = plan(site_list, lms, cands, pol, budget, inflation, k, on_step=show)
    before = float(site_list.gpus[result.before].sum())
    after = float(site_list.gpus[result.after].sum())
    Console().print(table)
    typer.echo(f"lying landmarks tolerated: {pol.liars} ({_liars_note(pol)})")
    typer.echo(f"GPUs verifiable: before {before:g} of {total:g}, after {after:g}")
    if result.stopped_early:
        typer.echo(f"stopped after {len(result.steps)} steps: no candidate adds a verifiable site")
    report = {
        "policy": pol.describe(),
        "liars": pol.liars,
        "quantile": inflation,
        "gpus_total": total,
        "gpus_before": before,
        "gpus_after": after,
        "steps": [step.__dict__ for step in result.steps],
        "sites": [
            {"name": n, "before": bool(b), "after": bool(a)}
            for n, b, a in zip(site_list.names, result.before, result.after, strict=True)
        ],
    }
    (out / "plan.json").write_text(json.dumps(report, indent=2) + "\n")
    if maps and result.steps:
        grid = land_grid(resolution)
        meta = {"policy": pol.describe(), "landmarks": len(lms)}
        cov = _map(grid, lms, pol, inflation, k, "map before")
        _write_map(out, "before", grid, cov, meta, f"before: {len(lms)} landmarks", lms)
        more = lms.concat(result.added)
        cov = _map(grid, more, pol, inflation, k, "map after")
        meta["landmarks"] = len(more)
        title = f"after: {len(lms)} + {len(result.added)} landmarks"
        _write_map(out, "after", grid, cov, meta, title, lms, result.added)
    typer.echo(f"wrote {out / 'plan.json'}" + (" and before/after maps" if maps else ""))
