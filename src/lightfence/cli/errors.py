"""How a command reports bad input: a one-line message on stderr and exit code 2, no traceback."""

from __future__ import annotations

import typer


def fail(message: str) -> typer.Exit:
    """Print `message` as an error and return the exit (code 2) for the caller to raise."""
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(2)


def refused(message: str) -> typer.Exit:
    """Print `message` as an error and return the exit (code 1: refused or failed, not a
    usage error) for the caller to raise."""
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(1)
