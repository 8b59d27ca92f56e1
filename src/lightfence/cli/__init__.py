"""Command-line interface. `app` (lightfence.cli.app) imports a command's module only to run it."""

from __future__ import annotations

from lightfence.cli.app import app as app


def main() -> None:
    app(prog_name="lightfence")
