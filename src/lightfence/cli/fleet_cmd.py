"""`lightfence simulate` and `lightfence batch`: a synthetic fleet, and verdicts for a fleet."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from lightfence.units import Bound

if TYPE_CHECKING:
    from lightfence.core.policy import Policy
    from lightfence.fleet.check import FleetCheck
    from lightfence.fleet.engine_local import EngineResult

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

# The fleet modules (pandas, pyarrow, Ray) load inside the commands: other commands start fast.

DEFAULT_POLICY = "outside:CN,HK,MO"


class Engine(StrEnum):
    LOCAL = "local"
    RAY = "ray"


class RayLayout(StrEnum):
    """Mirrors fleet.engine_ray.Layout, which is not imported here: Ray loads only when used."""

    AUTO = "auto"
    BY_FILE = "by-file"
    SHUFFLE = "shuffle"


def _policy(text: str, bound: Bound) -> Policy:
    from lightfence.core.policy import PolicyError, parse_policy

    try:
        return parse_policy(text, bound)
    except PolicyError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from exc


def _print_check(console: Console, check: FleetCheck) -> None:
    console.print(check.counts.to_string())
    console.print(
        f"false VERIFIED: {check.false_verified}   false REFUTED: {check.false_refuted}   "
        f"verified clones (key copied; needs a hardware-bound key): {check.verified_clones}"
    )


@commands.command()
def simulate(
    devices: Annotated[int, typer.Option("--devices", min=1, help="GPUs in the fleet.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for measurements/, truth.parquet.")],
    landmarks: Annotated[
        int, typer.Option("--landmarks", min=1, help="Landmarks per device.")
    ] = 10,
    seed: Annotated[int, typer.Option("--seed", help="The same seed gives the same fleet.")] = 0,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Verify with the local engine vs. truth.")
    ] = True,
    policy_text: Annotated[str, typer.Option("--policy", help="Policy for --check.")] = (
        DEFAULT_POLICY
    ),
    bound: Annotated[Bound, typer.Option("--bound", help="Speed bound for --check.")] = (
        Bound.VACUUM
    ),
) -> None:
    """Write a synthetic fleet on real geography, with adversaries and ground truth."""
    import pandas as pd

    from lightfence.fleet.check import check_verdicts
    from lightfence.fleet.simulate import simulate_fleet, write_fleet

    console = Console(stderr=True)
    policy = _policy(policy_text, bound)
    try:
        fleet = simulate_fleet(devices, landmarks, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    files = write_fleet(fleet, out)
    console.print(
        f"{devices} devices, {fleet.measurements.num_rows} measurement rows in {len(files)} "
        f"file(s) under {out / 'measurements'}; ground truth in {out / 'truth.parquet'}"
    )
    if not check:
        return
    result = _run(Engine.LOCAL, [str(f) for f in files], policy, out / "verdicts", 1, console)
    verdicts = pd.read_parquet(out / "verdicts")
    report = check_verdicts(verdicts, fleet.truth.to_pandas(), policy)
    console.print(
        f"verdicts for {result.devices} devices in {result.seconds:.1f} s ({policy.describe()})"
    )
    _print_check(console, report)
    if not report.sound:
        console.print("[red]SOUNDNESS VIOLATED: a verdict contradicts the ground truth[/red]")
        raise typer.Exit(1)


@commands.command()
def batch(
    input_glob: Annotated[str, typer.Option("--input", help="Parquet files: glob or directory.")],
    output: Annotated[Path, typer.Option("--output", help="Directory for the verdict files.")],
    engine: Annotated[Engine, typer.Option("--engine", help="local or ray.")] = Engine.LOCAL,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Ray workers (CPUs).")] = 2,
    policy_text: Annotated[str, typer.Option("--policy", help="The policy to verify.")] = (
        DEFAULT_POLICY
    ),
    bound: Annotated[Bound, typer.Option("--bound", help="vacuum (default) or fibre.")] = (
        Bound.VACUUM
    ),
    layout: Annotated[
        RayLayout,
        typer.Option(
            "--layout",
            help="Ray only. by-file: each file (or run of row groups) holds whole devices, "
            "proved from Parquet statistics, no shuffle; shuffle: group rows by device first; "
            "auto: by-file when the statistics allow it.",
        ),
    ] = RayLayout.AUTO,
) -> None:
    """Verdicts for every device in a set of measurement Parquet files."""
    from lightfence.fleet.engine_local import EngineError, expand_inputs

    console = Console(stderr=True)
    policy = _policy(policy_text, bound)
    try:
        files = expand_inputs(input_glob)
    except EngineError as exc:
        raise typer.BadParameter(str(exc), param_hint="--input") from exc
    result = _run(engine, files, policy, output, workers, console, layout)
    console.print(
        f"{result.devices} devices ({result.rows} rows) in {result.seconds:.1f} s with "
        f"{engine.value}; verdicts in {output} ({policy.describe()})"
    )


def _run(
    engine: Engine,
    files: list[str],
    policy: Policy,
    output: Path,
    workers: int,
    console: Console,
    layout: RayLayout = RayLayout.AUTO,
) -> EngineResult:
    from lightfence.fleet.engine_local import run_local

    try:
        if engine is Engine.RAY:
            from lightfence.fleet.engine_ray import Layout, run_ray, start_ray, stop_ray

            with console.status("starting Ray"):
                start_ray(workers)
            try:
                with console.status(f"verifying on Ray with {workers} worker(s)"):
                    return run_ray(files, policy, output, workers, Layout(layout.value))
            finally:
                stop_ray()
        with Progress(
            "verifying", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task("devices", total=None)
            return run_local(files, policy, output, progress=lambda n: bar.advance(task, n))
    except ValueError as exc:  # EngineError, BadFrame, InvalidBatch, UnknownCountry
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
