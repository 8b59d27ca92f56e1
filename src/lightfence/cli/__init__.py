"""Command-line interface. `app` (lightfence.cli.app) imports a command's module only to run it."""

from __future__ import annotations

import sys

from lightfence.cli.app import COMMANDS, app
from lightfence.extras import MissingExtra, extra_providing, install_hint

__all__ = ["app", "main"]


def main() -> None:
    try:
        app(prog_name="lightfence")
    except ModuleNotFoundError as exc:
        # A command whose extra is not installed: one line naming the extra, never a traceback.
        extra = exc.extra if isinstance(exc, MissingExtra) else extra_providing(exc.name or "")
        if extra is None:
            raise
        command = next((a for a in sys.argv[1:] if a in COMMANDS), "")
        print(f"lightfence {command} {install_hint(extra)}".replace("  ", " "), file=sys.stderr)
        raise SystemExit(2) from None
