"""`lightfence reverify`: check every stored record and GPU round again, store fresh verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lightfence.cli.errors import fail
from lightfence.cli.fleet_cmd import Engine

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""


@commands.command()
def reverify(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The verifier's settings file (as for `serve`): its database, liars, GPU root "
            "and calibration are what the verdicts are decided with.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (overrides the file; env LIGHTFENCE_DB_URL)."),
    ] = None,
    engine: Annotated[Engine, typer.Option("--engine", help="local or ray.")] = Engine.LOCAL,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Ray workers (CPUs).")] = 2,
    chunk: Annotated[
        int, typer.Option("--chunk", min=1, help="Devices per task (one Ray task each).")
    ] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check every stored record and GPU round again; exclude what fails; fresh verdicts.

    Each row is checked against its signed body, its signatures against the registry's keys,
    and each GPU round's evidence against the GPU root and calibration. A row that fails enters
    no verdict while marked, and its device gets a tampered_evidence alert; a marked row that
    verifies now counts again. Exit 1 when any row failed.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from lightfence.fleet.reverify import floors_without_calibration, newest_round_unappraised
    from lightfence.fleet.reverify import reverify as run
    from lightfence.verifier.config import normalise_db_url
    from lightfence.verifier.config_file import ConfigFileError, resolve, verifier_config
    from lightfence.verifier.db import DatabaseError
    from lightfence.verifier.service import Service

    console = Console(stderr=True)
    try:
        settings = resolve(config, {"db_url": db}, normalise_db_url=normalise_db_url)
        service = Service(verifier_config(settings))
    except (ConfigFileError, DatabaseError, ValueError) as exc:
        raise fail(str(exc)) from None
    try:
        if (
            config is None
            and settings.gpu_calibration is None
            and floors_without_calibration(service)
        ):
            raise fail(
                "stored GPU rounds were measured with an S_floor calibration, and no settings "
                "name one: give the verifier's settings (--config FILE) or every such round "
                "would be excluded"
            )
        unappraised = (
            newest_round_unappraised(service)
            if config is None and settings.gpu_root is None
            else None
        )
        if unappraised is not None:
            raise fail(
                f"the newest stored GPU round fails under the default GPU root ({unappraised}): "
                "give the verifier's settings (--config FILE) or every round would be excluded"
            )
        if engine is Engine.RAY:
            from lightfence.fleet.engine_ray import start_ray

            with console.status("starting Ray"):
                start_ray(workers)
        with Progress(
            "re-verifying", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task("devices", total=None)
            report = run(
                service,
                engine=engine.value,
                chunk=chunk,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        if engine is Engine.RAY:
            from lightfence.fleet.engine_ray import stop_ray

            stop_ray()
        service.close()
    failed = [("record", *f) for f in report.failed]
    failed += [("gpu_round", *f) for f in report.failed_gpu]
    restored = [("record", *f) for f in report.restored]
    restored += [("gpu_round", *f) for f in report.restored_gpu]
    if as_json:
        out = {
            "devices": report.devices,
            "records": report.records,
            "gpu_rounds": report.gpu_rounds,
            "verdicts": report.verdicts,
            "failed": [{"kind": k, "id": i, "device_id": d, "why": w} for k, i, d, w in failed],
            "restored": [{"kind": k, "id": i, "device_id": d} for k, i, d, _ in restored],
        }
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(
            f"{report.devices} device(s): {report.records} record(s) and {report.gpu_rounds} GPU "
            f"round(s) checked, {report.verdicts} verdict(s) stored"
        )
        for kind, rid, device_id, why in failed:
            typer.echo(f"  EXCLUDED {kind} {rid} of device {device_id}: {why}", err=True)
        for kind, rid, device_id, _ in restored:
            typer.echo(
                f"  RESTORED {kind} {rid} of device {device_id}: marked invalid, it verifies now "
                "(a pass with other settings marked it, or its mark was set by hand)",
                err=True,
            )
    if failed:
        typer.echo(
            f"{len(failed)} stored row(s) failed and are excluded from verdicts; their devices "
            "have tampered_evidence alerts",
            err=True,
        )
        raise typer.Exit(1)
