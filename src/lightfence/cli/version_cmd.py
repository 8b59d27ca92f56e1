"""`lightfence version`."""

from __future__ import annotations

import typer

from lightfence import __version__

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""


@commands.command()
def version() -> None:
    """Print the lightfence version."""
    typer.echo(__version__)
