"""The CLI's lazy command table: every entry resolves to the command it names, `--version` and
`python -m lightfence` work, and running a core command imports none of the heavy extras."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import typer.main
from typer.testing import CliRunner

import lightfence
from lightfence.cli.app import COMMANDS, app, load_command

HEAVY = (
    "ray",
    "pandas",
    "pyarrow",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "matplotlib",
    "confluent_kafka",
    "h3",
    "pynvml",
    "prometheus_client",
    "pydantic",
)
"""Top-level modules that no core command (agent, landmark, gate, verify) may import."""


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_table_entry_resolves_to_its_command(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    first_line = (command.help or "").strip().splitlines()[0]
    assert COMMANDS[name].summary == first_line, "update the summary in lightfence.cli.app"


def test_table_lists_every_command_of_every_module() -> None:
    modules = {entry.module for entry in COMMANDS.values()}
    for module_name in modules:
        module = importlib.import_module(f"lightfence.cli.{module_name}")
        defined = set(typer.main.get_group(module.commands).commands)
        listed = {n for n, e in COMMANDS.items() if e.module == module_name}
        assert defined == listed, module_name


def test_version_flag_and_command_agree() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).output.strip() == lightfence.__version__
    assert runner.invoke(app, ["version"]).output.strip() == lightfence.__version__


def test_root_help_lists_commands_from_the_table() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    listed = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    for name, entry in COMMANDS.items():
        # click wraps long summaries; the line that names the command starts the summary.
        assert " ".join(entry.summary.split()[:3]) in listed[name], name


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code == 2


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lightfence", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == lightfence.__version__


def _modules_after(argv: list[str]) -> set[str]:
    """Top-level modules imported by `lightfence ARGV` in a fresh interpreter."""
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.argv = ["lightfence", *{argv!r}]
        from lightfence.cli import main
        try:
            main()
        except SystemExit:
            pass
        sys.stdout.flush()
        print("\\n" + json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["gate", "check", "--help"],
        ["agent", "measure", "--help"],
        ["landmark", "serve", "--help"],
        ["verify", "--help"],
    ],
)
def test_core_commands_import_no_heavy_extra(argv: list[str]) -> None:
    imported = _modules_after(argv)
    assert not imported & set(HEAVY), argv


def test_version_imports_no_command_module() -> None:
    imported = _modules_after(["--version"])
    assert "numpy" not in imported and "nacl" not in imported


def _complete(words: str, cword: int) -> list[str]:
    env = {
        **os.environ,
        "_LIGHTFENCE_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    code = "from lightfence.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    return out.stdout.split()


def test_shell_completion_reaches_into_lazy_commands() -> None:
    assert _complete("lightfence ga", 1) == ["gate"]
    assert _complete("lightfence gate ch", 2) == ["check"]
    assert "--timeout" in _complete("lightfence gate check --ti", 3)


def test_a_typo_gets_a_suggestion() -> None:
    result = CliRunner().invoke(app, ["gat"])
    assert result.exit_code == 2
    assert "Did you mean 'gate'?" in result.output


def test_a_group_without_arguments_shows_its_help() -> None:
    result = CliRunner().invoke(app, ["gate"])
    assert "check" in result.output and "label" in result.output
