"""`lightfence serve --config FILE`: the file, LIGHTFENCE_<KEY> and flags, in that order."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from lightfence.verifier.config_file import (
    KEYS,
    ConfigFileError,
    ServeSettings,
    env_name,
    read_file,
    resolve,
)
from tls_support import self_signed

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "verifier.toml"
START_TIMEOUT_S = 60.0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "verifier.toml"
    path.write_text(text)
    return path


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    cfg = _write(tmp_path, 'port = 9001\nhost = "0.0.0.0"\nlog_level = "debug"\n')
    env = {"LIGHTFENCE_PORT": "9002", "LIGHTFENCE_LOG_LEVEL": "warning"}
    s = resolve(cfg, {"port": 9003}, env)
    assert (s.host, s.port, s.log_level) == ("0.0.0.0", 9003, "warning")
    assert resolve(cfg, {"port": None}, env).port == 9002
    assert resolve(cfg, {}, {}).port == 9001
    assert resolve(None, {}, {}) == ServeSettings()


def test_paths_in_the_file_are_relative_to_it(tmp_path: Path) -> None:
    cfg = _write(tmp_path, 'signing_key = "keys/v.key"\n')
    assert read_file(cfg)["signing_key"] == str(tmp_path.resolve() / "keys" / "v.key")
    # From a flag or the environment a path stays as given (relative to the working directory).
    assert resolve(cfg, {"signing_key": "k.key"}, {}).signing_key == "k.key"


def test_lists_from_env_and_file(tmp_path: Path) -> None:
    cfg = _write(tmp_path, 'gpu_calibration_keys = ["aa", "bb"]\n')
    assert resolve(cfg, {}, {}).gpu_calibration_keys == ("aa", "bb")
    env = {"LIGHTFENCE_GPU_CALIBRATION_KEYS": "cc; dd"}
    assert resolve(cfg, {}, env).gpu_calibration_keys == ("cc", "dd")


def test_liars_from_file_and_env(tmp_path: Path) -> None:
    assert resolve(_write(tmp_path, "liars = 2\n"), {}, {}).liars == "2"
    assert resolve(_write(tmp_path, 'liars = "AUTO"\n'), {}, {}).liars == "auto"
    assert resolve(None, {}, {"LIGHTFENCE_LIARS": "0"}).liars == "0"
    for bad in ("liars = -1\n", 'liars = "some"\n', "liars = true\n", "liars = 1.5\n"):
        with pytest.raises(ConfigFileError, match="liars"):
            resolve(_write(tmp_path, bad), {}, {})


def test_db_url_from_env_is_normalised() -> None:
    from lightfence.verifier.config import normalise_db_url

    env = {"LIGHTFENCE_DB_URL": "postgresql://u:p@db/x"}
    s = resolve(None, {}, env, normalise_db_url)
    assert s.db_url == "postgresql+psycopg://u:p@db/x"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("prot = 1\n", {}, "unknown key(s) prot"),
        ('port = "x"\n', {}, "port"),
        ("port = 70000\n", {}, "0..65535"),
        ("port = true\n", {}, "whole number"),
        ("records_per_s = [1]\n", {}, "must be a number"),
        ('tls_certfile = "c.pem"\n', {}, "go together"),
        ("port = \n", {}, "not valid TOML"),
        ("", {"LIGHTFENCE_PORT": "eighty"}, "LIGHTFENCE_PORT"),
        ("", {"LIGHTFENCE_LOG_LEVEL": "loud"}, "log_level"),
        ("[verifier]\nport = 1\n", {}, "unknown key(s) verifier"),
    ],
)
def test_bad_settings_say_which_and_why(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigFileError, match=None) as info:
        resolve(_write(tmp_path, text), {}, env)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read config file"):
        resolve(tmp_path / "nope.toml", {}, {})


def test_example_file_parses_and_names_only_known_keys() -> None:
    settings = resolve(EXAMPLE, {}, {})
    # Attack: the systemd install copies this file as it is; with host = "0.0.0.0" and no TLS
    # it served plain HTTP on every interface, bearer tokens in clear. Loopback here; the image
    # alone listens on every interface of its container.
    assert settings.host == "127.0.0.1"
    dockerfile = (EXAMPLE.parent / "Dockerfile").read_text()
    assert "LIGHTFENCE_HOST=0.0.0.0" in dockerfile
    text = EXAMPLE.read_text()
    for key in KEYS:  # every key is documented in the example, set or commented out
        assert f"{key} =" in text, key
        assert env_name(key).startswith("LIGHTFENCE_")


# --- the real command --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    for key in KEYS:  # the caller's environment must not leak into the test
        full_env.pop(env_name(key), None)
    full_env |= env or {}
    cmd = [sys.executable, "-c", "from lightfence.cli import main; main()", *args]
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, **kw: object) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/healthz", timeout=1, **kw).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not answer /healthz")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path, x509.DNSName("localhost"))


def test_serve_with_config_env_and_flag_over_tls(tmp_path: Path) -> None:
    """One real `serve`: the port from a flag beats the environment's, which beats the file's;
    the database and key paths come from the file (relative to it); TLS from the file."""
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    cfg = _write(
        tmp_path,
        f'port = 1\ndb_url = "sqlite:///{tmp_path}/v.db"\nsigning_key = "v.key"\n'
        f'checkpoints = "cp.jsonl"\ntls_certfile = "{cert.name}"\ntls_keyfile = "{key.name}"\n',
    )
    proc = _cli("serve", "--config", str(cfg), "--port", str(port), env={"LIGHTFENCE_PORT": "2"})
    try:
        _wait_healthy(
            proc, f"https://localhost:{port}", verify=ssl.create_default_context(cafile=cert)
        )
    finally:
        _stop(proc)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert f"lightfence verifier listening on https://127.0.0.1:{port}" in err
    assert (tmp_path / "v.key").exists()
    assert (tmp_path / "v.db").exists()


def test_serve_refuses_a_tls_key_others_can_read(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    key.chmod(0o644)
    cfg = _write(
        tmp_path,
        f'db_url = "sqlite:///{tmp_path}/v.db"\nsigning_key = "v.key"\n'
        f'tls_certfile = "{cert}"\ntls_keyfile = "{key}"\n',
    )
    proc = _cli("serve", "--config", str(cfg), "--port", str(_free_port()))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "chmod 600" in lines[0] and "644" in lines[0], lines


def test_serve_with_a_bad_config_says_one_line(tmp_path: Path) -> None:
    proc = _cli("serve", "--config", str(_write(tmp_path, "prot = 1\n")))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "prot" in lines[0]


def test_serve_with_a_wrong_tls_key_says_one_line(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = _self_signed(tmp_path / "other")
    cfg = _write(
        tmp_path,
        f'db_url = "sqlite:///{tmp_path}/v.db"\nsigning_key = "v.key"\n'
        f'tls_certfile = "{cert}"\ntls_keyfile = "{other_key}"\n',
    )
    proc = _cli("serve", "--config", str(cfg), "--port", str(_free_port()))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot use TLS certificate" in lines[0], lines


def test_verifier_key_prints_what_agents_and_gates_pin(tmp_path: Path) -> None:
    from lightfence.crypto.keyfile import read_verifier_key
    from lightfence.crypto.keys import SigningKey

    key = SigningKey.generate()
    (tmp_path / "keys").mkdir()
    key.save(tmp_path / "keys" / "v.key")
    cfg = _write(tmp_path, 'signing_key = "keys/v.key"\n')
    proc = _cli("verifier-key", "--config", str(cfg))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc == {"public_key": key.public_bytes.hex(), "key_id": key.key_id}
    (tmp_path / "pin.json").write_bytes(out)
    assert read_verifier_key(str(tmp_path / "pin.json")) == key.public_bytes


def test_verifier_key_without_a_key_says_one_line(tmp_path: Path) -> None:
    proc = _cli("verifier-key", "--signing-key", str(tmp_path / "none.key"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0] and "lightfence serve" in lines[0], lines


def test_example_config_as_compose_runs_it_on_postgresql(tmp_path: Path) -> None:
    """deploy/verifier.toml as the compose file uses it: the database (PostgreSQL) and the rest
    from LIGHTFENCE_<KEY> (here also host, port and state paths, which a container has fixed)."""
    from sqlalchemy import create_engine, text

    base = os.environ.get("LIGHTFENCE_TEST_PG_URL")
    if not base:
        pytest.skip(
            "!!! LIGHTFENCE_TEST_PG_URL is not set: the PostgreSQL run of the example did NOT run"
        )
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    port = _free_port()
    env = {
        "LIGHTFENCE_DB_URL": f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}",
        "LIGHTFENCE_HOST": "127.0.0.1",
        "LIGHTFENCE_PORT": str(port),
        "LIGHTFENCE_SIGNING_KEY": str(tmp_path / "v.key"),
        "LIGHTFENCE_CHECKPOINTS": str(tmp_path / "cp.jsonl"),
        "LIGHTFENCE_PRELOAD_POLICIES": "in:LU",  # the example's outside:CN,HK,MO takes 15 s
    }
    proc = _cli("serve", "--config", str(EXAMPLE), env=env)
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}")
    finally:
        _stop(proc)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert f"listening on http://127.0.0.1:{port} (db: postgresql+psycopg://" in err, err
    assert (tmp_path / "v.key").exists()
