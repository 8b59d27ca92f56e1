"""`lightfence demo` refuses bad input with a message and exit code 2, never a traceback."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

import lightfence.cli  # noqa: F401  (registers every command)
from lightfence.cli.app import app

runner = CliRunner()


def test_port_out_of_range() -> None:
    result = runner.invoke(app, ["demo", "--once", "--port", "70000"])
    assert result.exit_code == 2
    assert "--port" in result.output


def test_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["demo", "--once", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"port {port}" in result.output
    assert "Traceback" not in result.output
