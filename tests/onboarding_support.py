"""A real verifier (uvicorn on 127.0.0.1, SQLite, a signing key) for the onboarding CLI tests,
and the checks every failure line must pass."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from typer.testing import CliRunner, Result

from lightfence.cli.app import app
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.service import Service
from verifier_support import token

runner = CliRunner()


@dataclass
class LiveVerifier:
    url: str
    service: Service
    admin: str
    """An admin API token."""


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_verifier(directory: Path, *, signing_key: bool = True) -> Iterator[LiveVerifier]:
    """A verifier app served by uvicorn on a free loopback port, with an admin token."""
    db = f"sqlite:///{directory / 'v.db'}"
    key = str(directory / "verifier.key") if signing_key else None
    config = VerifierConfig(
        db_url=db,
        signing_key_path=key,
        checkpoint_path=str(directory / "checkpoints.jsonl") if signing_key else None,
    )
    application = create_app(config, worker=True)
    port = free_tcp_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    service: Service = application.state.service
    try:
        yield LiveVerifier(f"http://127.0.0.1:{port}", service, token(service, "root", Role.ADMIN))
    finally:
        server.should_exit = True
        thread.join(10)


def token_file(token: str) -> str:
    """A file holding `token` (mode 0600), as an operator keeps one: tokens never go in argv."""
    fd, path = tempfile.mkstemp(prefix="lightfence-token-")
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return runner.invoke(app, list(args), env=env, input=stdin)


def assert_one_error_line(result: Result, *, contains: str, code: int = 1) -> str:
    """The failure a new user sees: exit `code`, exactly one `error: ...` line on stderr, no
    traceback anywhere; returns that line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert contains in errors[0], errors[0]
    return errors[0]
