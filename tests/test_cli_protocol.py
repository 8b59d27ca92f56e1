"""The commands end to end: landmark init/serve in a real process, agent measure, verify."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from http_stub import stub_verifier
from lightfence.cli import main as _register  # noqa: F401  (imports every command module)
from lightfence.cli.app import app

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")
FRANKFURT = (50.1109, 8.6821)
SERVE = [sys.executable, "-c", "from lightfence.cli import main; main()", "landmark", "serve"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def landmarks(tmp_path: Path) -> Iterator[Path]:
    """Two landmark processes in Frankfurt; yields the registry file listing them."""
    procs: list[subprocess.Popen[str]] = []
    entries = []
    env = {**os.environ, "PYTHONPATH": SRC}
    try:
        # Both landmarks answer over loopback, so they must stand (almost) together: real RTTs of
        # 0.05 ms give caps of a few km, and two sites 30 km apart would be INCONSISTENT.
        for i, (lat, lon) in enumerate([FRANKFURT, (50.1150, 8.6900)]):
            d = tmp_path / f"lm{i}"
            port = free_udp_port()
            code, out = cli(
                "landmark", "init", "--id", f"lm{i}", "--lat", str(lat), "--lon", str(lon),
                "--listen", f"127.0.0.1:{port}", "--dir", str(d), "--position-error-km", "1",
            )  # fmt: skip
            assert code == 0, out
            assert oct((d / f"lm{i}.key").stat().st_mode & 0o777) == "0o600"
            code, out = cli("landmark", "entry", "--config", str(d / "landmark.toml"))
            assert code == 0, out
            entries.append(json.loads(out))
            proc = subprocess.Popen(
                [*SERVE, "--config", str(d / "landmark.toml")],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert "serving on" in line, line
        registry = tmp_path / "landmarks.json"
        registry.write_text(json.dumps({"landmarks": entries}))
        yield registry
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _, err = proc.communicate(timeout=15)
            assert proc.returncode == 0, err
            assert "stopped:" in err


def test_measure_then_verify_offline(landmarks: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "evidence.json"
    key = tmp_path / "dev" / "device.key"
    with stub_verifier() as (url, received):
        code, out = cli(
            "agent", "measure", "--landmarks", str(landmarks), "--rounds", "5",
            "--out", str(bundle), "--key", str(key), "--timeout", "5",
            "--submit", f"{url}/records", env={"LIGHTFENCE_VERIFIER_TOKEN": "abc"},
        )  # fmt: skip
    assert code == 0, out
    data = json.loads(bundle.read_text())
    assert len(data["records"]) == 2
    ((path, auth, body),) = received
    assert (path, auth) == ("/records", "Bearer abc")
    assert body == {"records": data["records"]}
    assert oct(key.stat().st_mode & 0o777) == "0o600"

    code, out = cli("verify", str(bundle), "--landmark-keys", str(landmarks))
    assert code == 0, out
    assert "2 record(s) valid, 0 rejected" in out

    code, out = cli(
        "verify", str(bundle), "--landmark-keys", str(landmarks),
        "--policy", f"within:{FRANKFURT[0]},{FRANKFURT[1]},300",
    )  # fmt: skip
    assert code == 0, out
    assert "VERIFIED" in out and "software" in out

    code, out = cli(
        "verify", str(bundle), "--landmark-keys", str(landmarks), "--policy", "in:FR", "--json"
    )
    assert code == 1
    assert json.loads(out)["verdict"]["verdict"] != "VERIFIED"

    # Tamper with one record's RTT: its landmark signature breaks, it is rejected, and the
    # verdict comes from the untouched record alone.
    data["records"][0]["rtts_ns"] = [1] * len(data["records"][0]["rtts_ns"])
    data["records"][0]["min_rtt_ns"] = 1
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    code, out = cli("verify", str(tampered), "--landmark-keys", str(landmarks), "--json")
    assert code == 1
    result = json.loads(out)
    assert len(result["accepted"]) == 1
    assert "landmark signature" in result["rejected"][0]["reason"]

    # A registry with another key for lm0 (an auditor who does not trust the bundle's keys).
    reg = json.loads(landmarks.read_text())
    reg["landmarks"][0]["public_key"] = reg["landmarks"][1]["public_key"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(reg))
    code, out = cli("verify", str(bundle), "--landmark-keys", str(other), "--json")
    assert code == 1
    assert "landmark key" in json.loads(out)["rejected"][0]["reason"]


def test_bad_input_gives_a_message_and_exit_code_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{")
    code, out = cli("verify", str(junk), "--landmark-keys", str(junk))
    assert code == 2 and "not valid JSON" in out
    code, out = cli("landmark", "serve", "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "not found" in out
    code, out = cli("agent", "measure", "--landmarks", str(tmp_path / "nope.json"))
    assert code == 2 and "not found" in out
    code, out = cli("agent", "keygen", "--key", str(tmp_path / "k"), "--identity", "tpm")
    assert code == 2 and "unknown identity provider" in out


def test_agent_keygen_prints_the_identity(tmp_path: Path) -> None:
    code, out = cli("agent", "keygen", "--key", str(tmp_path / "k"))
    assert code == 0
    ident = json.loads(out)
    assert ident["trust_level"] == "software" and len(ident["device_id"]) == 32
