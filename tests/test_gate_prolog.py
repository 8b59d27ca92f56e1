"""examples/slurm/prolog.sh, run by bash with the real CLI against the loopback stub verifier.
No Slurm here: the test sets the variables slurmd would (SLURM_JOB_ID, SLURM_JOB_GPUS)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lightfence
from gate_verifier_stub import POLICY, VERIFIER, FakeVerifier, dead_url, serve_verifier
from lightfence.core.kinds import VerdictKind

pytestmark = pytest.mark.slow  # each case starts the CLI: ~0.5 s per process, more under load

PROLOG = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "prolog.sh"
GPU0 = "0" * 31 + "a"
GPU1 = "0" * 31 + "b"


@pytest.fixture
def verifier() -> Iterator[tuple[str, FakeVerifier]]:
    with serve_verifier() as served:
        yield served


def _env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    src = Path(lightfence.__file__).resolve().parents[1]
    wrapper = tmp_path / "lightfence"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="{src}" exec "{sys.executable}" '
        "-c 'from lightfence.cli import main; main()' \"$@\"\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "verifier.pub").write_text(VERIFIER.public_bytes.hex() + "\n")
    (tmp_path / "devices").write_text(f"# gpu device\n0 {GPU0}\n1 {GPU1}\n")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LIGHTFENCE_GATE_CONF": str(tmp_path / "none.env"),
        "LIGHTFENCE_BIN": str(wrapper),
        "LIGHTFENCE_VERIFIER_URL": url,
        "LIGHTFENCE_VERIFIER_KEY": str(tmp_path / "verifier.pub"),
        "LIGHTFENCE_DEVICE_MAP": str(tmp_path / "devices"),
        "LIGHTFENCE_GATE_STATE": str(tmp_path / "state"),
        "SLURM_JOB_ID": "42",
        **extra,
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PROLOG)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_prolog_starts_the_job_only_on_allowed_gpus(
    verifier: tuple[str, FakeVerifier], tmp_path: Path
) -> None:
    url, fake = verifier
    fake.verdicts.update({GPU0: VerdictKind.VERIFIED, GPU1: VerdictKind.VERIFIED})
    assert _run(_env(tmp_path, url)).returncode == 0
    fake.verdicts[GPU1] = VerdictKind.REFUTED
    # A job given only GPU 0 may still start; one that may reach both may not.
    assert _run(_env(tmp_path, url, SLURM_JOB_GPUS="0")).returncode == 0
    refused = _run(_env(tmp_path, url))
    assert refused.returncode == 1
    assert GPU1 in refused.stderr and "verdict-refuted" in refused.stderr
    assert GPU0 not in refused.stderr  # only the refused GPU is reported
    # A GPU missing from the map is refused, never skipped.
    assert _run(_env(tmp_path, url, SLURM_JOB_GPUS="0,7")).returncode == 1


def test_prolog_refuses_when_the_verifier_is_down_fail_closed(tmp_path: Path) -> None:
    result = _run(_env(tmp_path, dead_url()))
    assert result.returncode == 1 and "no-token" in result.stderr


def test_prolog_with_token_files(tmp_path: Path) -> None:
    import time

    from lightfence.gate.issuer import token_for_latest_verdict

    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for device, verdict in ((GPU0, VerdictKind.VERIFIED), (GPU1, VerdictKind.VERIFIED)):
        text = token_for_latest_verdict(device, verdict, POLICY, VERIFIER, time.time(), 300)
        (tokens / f"{device}.token").write_text(text)
    env = _env(tmp_path, "", LIGHTFENCE_TOKEN_DIR=str(tokens), SLURM_JOB_GPUS="1")
    assert _run(env).returncode == 0
