"""Command-line interface. Each command group lives in its own module and registers on `app`."""

from __future__ import annotations

import lightfence.cli.agent_cmd  # registers commands
import lightfence.cli.landmark_cmd  # registers commands
import lightfence.cli.verify_cmd  # noqa: F401  (registers commands)
from lightfence.cli import version_cmd  # noqa: F401  (registers commands)
from lightfence.cli.app import app


def main() -> None:
    app()
