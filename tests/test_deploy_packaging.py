"""deploy/: systemd units, the verifier image, the compose file and the TLS proxy, each checked
with the real tool where it runs here (systemd-analyze, hadolint, docker), and parsed otherwise.
A check whose tool is missing is skipped with the reason; docs/deploy.md lists which ran."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service")) + sorted(
    (DEPLOY / "systemd").glob("*.timer")
)
SERVICES = [u for u in UNITS if u.suffix == ".service"]
INSTALLED = "/opt/lightfence/bin/lightfence"
"""Where the units expect lightfence (the virtualenv of docs/deploy.md's install step)."""
MAX_EXPOSURE = 2.0
"""`systemd-analyze security` score (0 best, 10 worst) each service must stay under."""
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=",
    "RestrictNamespaces=yes",
    "SystemCallFilter=@system-service",
    "UMask=0077",
)


def _tool(name: str) -> str:
    """The tool's path, or a loud skip saying what did not run."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"PACKAGING CHECK NOT RUN: `{name}` is not installed here")
    return found


def _units_with_local_binary(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointed at this checkout's lightfence: systemd-analyze verify
    checks that the executable exists, and /opt/lightfence is not installed here."""
    shim = tmp_path / "bin" / "lightfence"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m lightfence "$@"\n')
    shim.chmod(0o755)
    out = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED, str(shim)))
        out.append(copy)
    return out


def _exec_start(unit: Path) -> list[str]:
    lines = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1, unit.name
    return shlex.split(lines[0].removeprefix("ExecStart="))


# --- systemd ---------------------------------------------------------------------------------


def test_units_hardened_and_run_as_a_service_user() -> None:
    assert {u.name for u in UNITS} == {
        "lightfence-verifier.service",
        "lightfence-landmark.service",
        "lightfence-agent.service",
        "lightfence-agent.timer",
    }
    for unit in SERVICES:
        text = unit.read_text()
        for line in HARDENING:
            assert re.search(rf"^{re.escape(line)}$", text, re.M), f"{unit.name}: {line}"
        assert re.search(r"^(User=lightfence|DynamicUser=yes)$", text, re.M), unit.name
        assert re.search(r"^StateDirectory=lightfence", text, re.M), unit.name
    agent = (DEPLOY / "systemd" / "lightfence-agent.service").read_text()
    assert "Type=oneshot" in agent
    timer = (DEPLOY / "systemd" / "lightfence-agent.timer").read_text()
    assert "Persistent=true" in timer and "WantedBy=timers.target" in timer
    sysusers = (DEPLOY / "systemd" / "lightfence.sysusers").read_text()
    assert re.search(r"^u lightfence ", sysusers, re.M)


@pytest.mark.parametrize("unit", SERVICES, ids=lambda u: u.name)
def test_exec_start_is_a_real_lightfence_command(unit: Path) -> None:
    """Every option a unit passes exists: the command's --help accepts them and names them."""
    argv = _exec_start(unit)
    assert argv[0] == INSTALLED
    args = argv[1:]
    first_option = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    command = args[:first_option]  # e.g. ["agent", "measure"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "lightfence", *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for option in (a for a in args if a.startswith("--")):
        assert option in done.stdout, f"{unit.name}: {' '.join(command)} has no {option}"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _tool("systemd-analyze")
    units = _units_with_local_binary(tmp_path)
    done = subprocess.run(
        [tool, "verify", "--man=no", *map(str, units)], capture_output=True, text=True, timeout=60
    )
    # Unknown or misspelt directives are only warnings (exit 0): any output about our units fails.
    complaints = [ln for ln in done.stderr.splitlines() if "lightfence" in ln]
    assert done.returncode == 0 and not complaints, done.stderr


def test_systemd_analyze_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt hardening directive is reported."""
    tool = _tool("systemd-analyze")
    unit = _units_with_local_binary(tmp_path)[0]
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    done = subprocess.run(
        [tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "NoNewPrivilege" in done.stderr


@pytest.mark.parametrize("name", [u.name for u in SERVICES])
def test_systemd_exposure_score(tmp_path: Path, name: str) -> None:
    tool = _tool("systemd-analyze")
    unit = next(u for u in _units_with_local_binary(tmp_path) if u.name == name)
    done = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", f"--threshold={MAX_EXPOSURE * 10:g}",
         str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    if "Unknown option" in done.stderr or "unrecognized option" in done.stderr:
        pytest.skip(
            f"PACKAGING CHECK NOT RUN: this systemd-analyze has no --offline: {done.stderr}"
        )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert score is not None, done.stdout + done.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE, done.stdout


# --- the container image ---------------------------------------------------------------------


DOCKERFILE = DEPLOY / "Dockerfile"


def test_dockerfile_is_multi_stage_non_root_and_locked() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM .*$", text, re.M)
    assert len(stages) >= 2, "multi-stage: build in one stage, run in a slim one"
    final = text[text.rindex("\nFROM ") :]
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}, "the final stage runs as non-root"
    assert "--require-hashes -r /tmp/requirements.txt" in text
    assert "COPY requirements/postgres.txt" in text
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (REPO / path).exists(), f"COPY {path}: not in the repository"


def test_postgres_lock_matches_the_dev_lock() -> None:
    """requirements/postgres.txt pins the versions the tests ran with (make lock)."""

    def pins(path: Path) -> dict[str, str]:
        return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", path.read_text(), re.M))

    image, dev = (
        pins(REPO / "requirements" / "postgres.txt"),
        pins(REPO / "requirements" / "dev.txt"),
    )
    assert {"fastapi", "uvicorn", "sqlalchemy", "psycopg", "alembic"} <= set(image)
    assert {k: v for k, v in image.items() if dev.get(k) != v} == {}


def test_hadolint() -> None:
    tool = _tool("hadolint")
    done = subprocess.run([tool, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    tool = _tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    done = subprocess.run([tool, str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3008" in done.stdout


def _docker_daemon() -> str:
    tool = _tool("docker")
    info = subprocess.run([tool, "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        pytest.skip(
            "PACKAGING CHECK NOT RUN: no container engine answers here (`docker info`: "
            f"{info.stderr.strip().splitlines()[-1] if info.stderr.strip() else info.returncode})"
        )
    return tool


def test_docker_build() -> None:
    tool = _docker_daemon()
    done = subprocess.run(
        [tool, "build", "-f", str(DOCKERFILE), "-t", "lightfence-verifier:test", str(REPO)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = subprocess.run(
        [tool, "run", "--rm", "lightfence-verifier:test", "verifier-key", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


# --- compose and the TLS proxy -----------------------------------------------------------------


COMPOSE = DEPLOY / "compose.yaml"


def test_compose_file() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    db, verifier = services["db"], services["verifier"]
    assert db["image"].startswith("postgres:")
    assert "healthcheck" in db
    assert verifier["depends_on"]["db"]["condition"] == "service_healthy"
    build = verifier["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    url = verifier["environment"]["LIGHTFENCE_DB_URL"]
    assert url.startswith("postgresql://lightfence:${LIGHTFENCE_DB_PASSWORD") and "@db:5432/" in url
    assert verifier["user"].split(":")[0] not in {"root", "0"}
    assert verifier["read_only"] is True and verifier["cap_drop"] == ["ALL"]
    assert any(v.endswith(":/var/lib/lightfence") for v in verifier["volumes"])
    # The settings the environment overrides are keys of the config file.
    from lightfence.verifier.config_file import KEYS, env_name

    known = {env_name(k) for k in KEYS}
    assert set(verifier["environment"]) <= known
    caddy = services["caddy"]
    assert caddy["profiles"] == ["tls"]
    assert any(v.startswith("./Caddyfile:") for v in caddy["volumes"])
    assert (COMPOSE.parent / "Caddyfile").exists()


def _compose_command() -> list[str]:
    """`docker compose` (v2 plugin) or Debian's `docker-compose` (v1.29), whichever runs."""
    docker = shutil.which("docker")
    if docker is not None:
        v2 = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if v2.returncode == 0:
            return [docker, "compose"]
    v1 = shutil.which("docker-compose")
    if v1 is not None:
        return [v1]
    pytest.skip(
        "PACKAGING CHECK NOT RUN: neither the docker compose plugin nor docker-compose is "
        "installed here (compose.yaml only parsed)"
    )


def test_docker_compose_config() -> None:
    compose = _compose_command()
    for profile in ([], ["--profile", "tls"]):
        done = subprocess.run(
            [*compose, "-f", str(COMPOSE), *profile, "config", "--quiet"],
            capture_output=True,
            text=True,
            env={**os.environ, "LIGHTFENCE_DB_PASSWORD": "test"},
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_compose_refuses_to_start_without_a_database_password() -> None:
    compose = _compose_command()
    env = {k: v for k, v in os.environ.items() if k != "LIGHTFENCE_DB_PASSWORD"}
    done = subprocess.run(
        [*compose, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0 and "set LIGHTFENCE_DB_PASSWORD" in done.stderr


def test_caddyfile() -> None:
    text = (DEPLOY / "Caddyfile").read_text()
    assert re.search(r"reverse_proxy \{\$LIGHTFENCE_UPSTREAM:127\.0\.0\.1:8080\}", text)
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip(
            "PACKAGING CHECK NOT RUN: `caddy` is not installed here (Caddyfile only parsed)"
        )
    done = subprocess.run(
        [caddy, "adapt", "--config", str(DEPLOY / "Caddyfile")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
