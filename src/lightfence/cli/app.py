"""The root `lightfence` command, with a lazy command table (pip's model).

`lightfence gate check` runs in a Slurm prolog once per job per GPU, so start-up is paid per job:
the root imports no command module. `COMMANDS` names each command's module and a one-line
summary for `lightfence --help`; only the module of the command being run is imported, when
click resolves the name. A command module keeps its commands on its own `commands` Typer.

Help and usage errors are plain click text, not Rich panels: Rich's help renderer costs ~70 ms
of imports per start, and typer cannot mix the two styles in one command tree (a plain group
under a Rich root prints nothing when called without arguments).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from lightfence import __version__

if TYPE_CHECKING:
    # typer >= 0.26 vendors click; these are the classes its groups and commands derive from.
    from typer._click.core import Command, Context


@dataclass(frozen=True)
class LazyCommand:
    module: str
    """Module under lightfence.cli whose `commands` Typer holds the command."""
    summary: str
    """The line `lightfence --help` shows; tests check it is the command's own first line."""


COMMANDS: dict[str, LazyCommand] = {
    "agent": LazyCommand(
        "agent_cmd", "The device agent: measure against landmarks, collect evidence."
    ),
    "landmark": LazyCommand(
        "landmark_cmd", "Run a landmark: answer timed challenges, sign what it measured."
    ),
    "device": LazyCommand(
        "device_cmd",
        "Enrol, list and retire devices on a verifier (--verifier URL).",
    ),
    "gate": LazyCommand(
        "gate_cmd",
        "The operator's compliance gate: may work start on this GPU? Read-only; no kill switch.",
    ),
    "verify": LazyCommand(
        "verify_cmd",
        "Re-check every signature in BUNDLE with public keys alone, then decide the policy.",
    ),
    "serve": LazyCommand(
        "verifier_cmd", "Run the verifier service (migrates the database schema in place first)."
    ),
    "verifier-key": LazyCommand(
        "verifier_cmd", "Print the verifier's public key (what agents and gates pin)."
    ),
    "status": LazyCommand(
        "verifier_cmd",
        "Fleet summary: devices by latest verdict, landmarks, open alerts, rejections.",
    ),
    "audit": LazyCommand("verifier_cmd", "The verifier's hash-chained audit log."),
    "report": LazyCommand(
        "report_cmd",
        "Write a compliance report (HTML, and PDF where chromium is installed) for an auditor.",
    ),
    "token": LazyCommand("verifier_cmd", "API tokens for the verifier (stored hashed)."),
    "demo": LazyCommand(
        "demo_cmd",
        "Run a verifier, 16 landmarks and a small fleet on emulated geography; show the verdicts.",
    ),
    "eval": LazyCommand(
        "eval_cmd",
        "Evaluate verdicts and position estimates on real measured RTTs (leave-one-out).",
    ),
    "coverage": LazyCommand(
        "coverage_cmd",
        "Map where an honest device would be VERIFIED with these landmarks, and with what slack.",
    ),
    "plan": LazyCommand(
        "coverage_cmd",
        "Choose new landmark positions that make the most GPUs verifiable, greedily.",
    ),
    "simulate": LazyCommand(
        "fleet_cmd", "Write a synthetic fleet on real geography, with adversaries and ground truth."
    ),
    "batch": LazyCommand(
        "fleet_cmd", "Verdicts for every device in a set of measurement Parquet files."
    ),
    "reverify": LazyCommand(
        "reverify_cmd",
        "Check every stored record and GPU round again; exclude what fails; fresh verdicts.",
    ),
    "stream-worker": LazyCommand(
        "stream_cmd",
        "Check signed records from a Kafka topic with the verifier's own code; store in the DB.",
    ),
    "version": LazyCommand("version_cmd", "Print the lightfence version."),
}


def load_command(name: str) -> Command:
    """Import the module of command `name` and return its click command."""
    entry = COMMANDS[name]
    module = importlib.import_module(f"lightfence.cli.{entry.module}")
    module.commands.rich_markup_mode = app.rich_markup_mode  # one help style for the tree
    group = typer.main.get_group(module.commands)
    command = group.commands.get(name)
    if command is None:
        raise LookupError(f"lightfence.cli.{entry.module} defines no command {name!r}")
    return command


class LazyGroup(TyperGroup):
    """A group whose commands are imported on use. Until then each is a stand-in carrying its
    summary from `COMMANDS`, so help, shell completion of names and "did you mean" suggestions
    work without importing anything; `resolve_command` swaps in the real one before it runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stand_ins: set[str] = set()
        for name, entry in COMMANDS.items():
            if name not in self.commands:
                self.commands[name] = TyperCommand(
                    name, help=entry.summary, short_help=entry.summary
                )
                self._stand_ins.add(name)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] in self._stand_ins:
            self.commands[args[0]] = load_command(args[0])
            self._stand_ins.discard(args[0])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="lightfence",
    cls=LazyGroup,
    help="Prove which region a GPU is in, from the speed of light and a device-bound key.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the lightfence version and exit.",
        ),
    ] = False,
) -> None:
    """Prove which region a GPU is in, from the speed of light and a device-bound key."""
