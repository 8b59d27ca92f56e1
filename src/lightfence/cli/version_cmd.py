"""`lightfence version`."""

from __future__ import annotations

import typer

from lightfence import __version__
from lightfence.cli.app import app


@app.command()
def version() -> None:
    """Print the lightfence version."""
    typer.echo(__version__)
