"""The root `lightfence` command. Subcommand modules attach themselves to `app`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="lightfence",
    help="Prove which region a GPU is in, from the speed of light and a device-bound key.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
