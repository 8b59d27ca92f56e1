"""scripts/gpu_check.py: the 'why not' path here (no GPU), and the measuring path on a stand-in.

It has not been run on a real GPU (none on the development machine)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lightfence.crypto.keys import SigningKey
from lightfence.evidence.calibration import parse_calibration
from lightfence.identity.gpu_signer import GpuReport
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_says_why_not_without_a_gpu() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json"], capture_output=True, env=env, check=False
    )
    assert proc.returncode == 3, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert doc["available"] is False
    assert doc["why"][0].startswith("nvml: ") and "nvattest not found" in doc["why"][1]


def test_measures_a_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load()
    root = GpuTestRoot.create()
    gpu = GpuStandIn(root)
    (tmp_path / "root.pem").write_bytes(root.pem())
    key = SigningKey.generate()
    key.save(tmp_path / "cal.key")

    def signer(nonce: bytes) -> GpuReport:
        return GpuReport(gpu.report(nonce), gpu.chain_der)

    monkeypatch.setattr(mod, "probe_gpu_signer", lambda i: (signer, "stand-in", []))
    args = ["--reports", "20", "--root", str(tmp_path / "root.pem"), "--json"]
    args += [
        "--calibration-out",
        str(tmp_path / "cal.json"),
        "--signing-key",
        str(tmp_path / "cal.key"),
    ]
    assert mod.main(args) == 0
    cal = parse_calibration(json.loads((tmp_path / "cal.json").read_text()), {key.public_bytes})
    floor = cal.floor_ms("LF-TEST GPU BROM", gpu.vbios_version)
    assert floor > 0
    # With NVIDIA's root the stand-in's reports fail appraisal: exit 1, no calibration.
    assert mod.main(["--reports", "3", "--json"]) == 1
