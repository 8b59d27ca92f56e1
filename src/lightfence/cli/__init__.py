"""Command-line interface. Each command group lives in its own module and registers on `app`."""

from __future__ import annotations

from lightfence.cli import fleet_cmd, version_cmd  # noqa: F401  (registers commands)
from lightfence.cli.app import app


def main() -> None:
    app()
