"""`lightfence eval`: verdicts and estimates on real measured RTTs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lightfence.core.policy import PolicyError, parse_policy
from lightfence.core.robust import DEFAULT_LIARS, check_liars
from lightfence.eval.crossval import OUTER_FOLDS
from lightfence.extras import require
from lightfence.rttdata import DatasetError
from lightfence.units import Bound

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

_err = Console(stderr=True)


@commands.command("eval")
def eval_command(
    data: Annotated[
        Path | None,
        typer.Option(help="Directory in the rtt-public CSV schema [default: the shipped data]"),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(help="Directory whose landmark-to-landmark RTTs calibrate the estimate"),
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            help="outside:CC,.. | in[+sea]:CC,.. | within:LAT,LON,KM | in-declared-country[+sea]"
        ),
    ] = "outside:CN,HK,MO",
    bound: Annotated[Bound, typer.Option(help="Speed bound: vacuum (default) or fibre")] = (
        Bound.VACUUM
    ),
    landmark_error_km: Annotated[
        float, typer.Option(help="Survey error of every landmark's coordinates, km", min=0.0)
    ] = 0.0,
    liars: Annotated[
        str,
        typer.Option(
            help="Lying landmarks every verdict must survive: a count, or 'auto' (the verifier's "
            "rule: 1 with at least 4 landmarks, else 0)"
        ),
    ] = str(DEFAULT_LIARS),
    attack_liars: Annotated[
        int,
        typer.Option(
            help="Landmarks that lie for each relayed device in the liar trials (0: no trials)",
            min=0,
        ),
    ] = 0,
    outer_folds: Annotated[
        int, typer.Option(help="Outer folds of the estimate's nested cross-validation", min=2)
    ] = OUTER_FOLDS,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout")
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write a Markdown report with plots to this directory")
    ] = None,
) -> None:
    """Evaluate verdicts and position estimates on real measured RTTs (leave-one-out).

    Verdicts leave each target out of the landmarks; estimates are chosen by nested
    cross-validation, and their errors come from the outer folds only."""
    if report is not None:
        require("eval", "lightfence eval --report")  # before minutes of work, not after
    from lightfence.eval.run import run_eval

    try:
        check_liars(liars)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--liars") from exc
    try:
        pol = parse_policy(policy, bound, liars)
    except PolicyError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from exc
    for path, name in ((data, "--data"), (calibration, "--calibration")):
        if path is not None and not path.is_dir():
            raise typer.BadParameter(f"{path} is not a directory", param_hint=name)
    try:
        with _err.status("evaluating") as status:
            result = run_eval(
                pol,
                data,
                calibration,
                landmark_error_km,
                step=lambda msg: status.update(f"evaluating: {msg}"),
                attack_liars=attack_liars,
                outer_folds=outer_folds,
            )
    except DatasetError as exc:
        # No markup (paths may hold brackets) and no hard wrapping (paths must stay whole).
        _err.print(f"error: {exc}", markup=False, soft_wrap=True, style="red")
        raise typer.Exit(2) from exc
    summary = result.to_json()
    if report is not None:
        from lightfence.eval.report import write_report

        path = write_report(result, report)
        _err.print(f"report written to {path}")
    if as_json:
        typer.echo(json.dumps(summary, indent=None))
        return
    _print_summary(summary)


def _print_summary(s: dict[str, object]) -> None:
    console = Console()
    table = Table(title=f"lightfence eval — policy {s['policy']} (bound: {s['bound']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    verdicts = s["verdicts"]
    assert isinstance(verdicts, dict)
    table.add_row("targets", str(s["targets"]))
    for kind, count in verdicts.items():
        table.add_row(f"  {kind}", str(count))
    table.add_row("false VERIFIED (must be 0)", str(s["false_verified"]))
    table.add_row("false REFUTED", str(s["false_refuted"]))
    table.add_row("relay trials", str(s["relay_trials"]))
    table.add_row("relay false VERIFIED (must be 0)", str(s["relay_false_verified"]))
    tolerated = s["tolerated_liars"]
    assert isinstance(tolerated, dict)
    per_f = ", ".join(f"f = {f}: {n}" for f, n in tolerated.items())
    table.add_row("lying landmarks tolerated", f"{s['liars']} ({per_f} targets)")
    table.add_row("honest VERIFIED lost to f (vs f = 0)", str(s["verified_lost_to_liar_tolerance"]))
    table.add_row(f"liar trials ({s['attack_liars']} liars each)", str(s["liar_trials"]))
    table.add_row("liar false VERIFIED (must be 0 if liars <= f)", str(s["liar_false_verified"]))
    table.add_row("estimate error (outer folds), median km", f"{s['estimate_median_km']:.0f}")
    table.add_row("estimate error (outer folds), p90 km", f"{s['estimate_p90_km']:.0f}")
    table.add_row(
        "baseline shortest ping, median km", f"{s['baseline_shortest_ping_median_km']:.0f}"
    )
    table.add_row("baseline CBG (2/3 c), median km", f"{s['baseline_cbg_median_km']:.0f}")
    table.add_row("baseline CBG (2/3 c), p90 km", f"{s['baseline_cbg_p90_km']:.0f}")
    console.print(table)
