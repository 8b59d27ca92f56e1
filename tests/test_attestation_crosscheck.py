"""lightfence's appraisal against NVIDIA's own nv-local-gpu-verifier, case by case.

NVIDIA's package pins old dependencies, so it runs in its own venv (`make nvverifier-venv`
creates `.venv-nvverifier`; or point $LIGHTFENCE_NVVERIFIER_PYTHON at any python that has
`nv-local-gpu-verifier==2.7.3`), driven through scripts/nvidia_crosscheck.py in a subprocess.
Without that venv the test is skipped with the reason; CI creates it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lightfence.attestation.certs import split_der
from test_attestation import CHAIN, NONCE, REPORT, _appraise

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "nvidia_crosscheck.py"


def _nv_python() -> Path | None:
    env = os.environ.get("LIGHTFENCE_NVVERIFIER_PYTHON")
    candidate = Path(env) if env else ROOT / ".venv-nvverifier" / "bin" / "python"
    return candidate if candidate.exists() else None


def _pem(chain_der: bytes) -> str:
    out = []
    for der in split_der(chain_der):
        b64 = base64.encodebytes(der).decode().replace("\n", "")
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        out.append(
            "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
        )
    return "".join(out)


def _nvidia_ok(result: dict[str, Any]) -> bool:
    keys = ("parsed", "nonce_match", "chain_valid", "fwid_match", "signature_valid")
    return all(result.get(k) is True for k in keys)


def test_appraisal_agrees_with_nvidia_verifier(tmp_path: Path) -> None:
    py = _nv_python()
    if py is None:
        pytest.skip(
            "NVIDIA's verifier venv is absent: run `make nvverifier-venv` (or set "
            "LIGHTFENCE_NVVERIFIER_PYTHON) to cross-check the appraisal against it"
        )
    rng = random.Random(1616)
    cases: list[tuple[bytes, bytes, bytes]] = [(REPORT, CHAIN, NONCE), (REPORT, CHAIN, bytes(32))]
    for _ in range(40):
        bad = bytearray(REPORT)
        bad[rng.randrange(len(bad))] ^= rng.randrange(1, 256)
        cases.append((bytes(bad), CHAIN, NONCE))
    certs = split_der(CHAIN)
    for _ in range(10):
        i = rng.randrange(len(certs) - 1)  # NVIDIA replaces the GPU's root copy with its own
        bad = bytearray(certs[i])
        bad[rng.randrange(len(bad))] ^= rng.randrange(1, 256)
        cases.append((REPORT, b"".join([*certs[:i], bytes(bad), *certs[i + 1 :]]), NONCE))
    request = [{"report": r.hex(), "chain_pem": _pem(c), "nonce": n.hex()} for r, c, n in cases]
    proc = subprocess.run(
        [str(py), str(SCRIPT)],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=300,
        check=False,
        cwd=tmp_path,  # NVIDIA's package writes verifier.log into its working directory
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    results = json.loads(proc.stdout)
    assert _nvidia_ok(results[0]), results[0]
    mismatches = []
    for (r, c, n), nv in zip(cases, results, strict=True):
        ours = _appraise(report=r, chain=c, nonce=n)
        if ours.ok != _nvidia_ok(nv):
            mismatches.append((ours.reason, nv))
    assert not mismatches
    ours = _appraise()
    assert ours.gpu is not None
    assert (ours.gpu.ueid, ours.gpu.hwmodel) == (results[0]["ueid"], results[0]["hwmodel"])
