"""Command-line interface. Each command group lives in its own module and registers on `app`."""

from __future__ import annotations

# Importing a command module registers its commands on `app`; one line per module.
from lightfence.cli import agent_cmd as agent_cmd
from lightfence.cli import coverage_cmd as coverage_cmd
from lightfence.cli import demo_cmd as demo_cmd
from lightfence.cli import eval_cmd as eval_cmd
from lightfence.cli import fleet_cmd as fleet_cmd
from lightfence.cli import gate_cmd as gate_cmd
from lightfence.cli import landmark_cmd as landmark_cmd
from lightfence.cli import verifier_cmd as verifier_cmd
from lightfence.cli import verify_cmd as verify_cmd
from lightfence.cli import version_cmd as version_cmd
from lightfence.cli.app import app as app


def main() -> None:
    app()
