"""GPU signers: NVML and nvattest collectors, and exactly why each is unavailable.

No GPU exists on the test machine: NVML is a stand-in module (the same shape as pynvml's
calls), nvattest a stand-in executable. The real pynvml is used for the no-driver message.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lightfence.identity.gpu_signer import (
    GpuSignerUnavailable,
    nvattest_gpu_signer,
    nvml_gpu_signer,
    probe_gpu_signer,
)
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot

GPU = GpuStandIn(GpuTestRoot.create())


def _pem() -> bytes:
    from lightfence.attestation.certs import split_der

    out = b""
    for der in split_der(GPU.chain_der):
        b64 = base64.encodebytes(der)
        out += b"-----BEGIN CERTIFICATE-----\n" + b64 + b"-----END CERTIFICATE-----\n"
    return out


class FakeNvml:
    class NVMLError(Exception):
        pass

    def __init__(self, cc: int = 1, driver: bool = True, cc_supported: bool = True) -> None:
        self.cc, self.driver, self.cc_supported = cc, driver, cc_supported
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        if not self.driver:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> object:
        return object()

    def nvmlSystemGetConfComputeState(self) -> Any:
        if not self.cc_supported:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(ccFeature=self.cc)

    def nvmlDeviceGetConfComputeGpuCertificate(self, h: object) -> Any:
        pem = _pem()
        return SimpleNamespace(
            attestationCertChain=pem + b"\0" * 10, attestationCertChainSize=len(pem)
        )

    def nvmlDeviceGetConfComputeGpuAttestationReport(self, h: object, nonce: bytes) -> Any:
        self.calls.append("report")
        r = GPU.report(nonce)
        return SimpleNamespace(attestationReport=r + b"\0" * 7, attestationReportSize=len(r))


def test_nvml_signer_signs_the_nonce() -> None:
    nv = FakeNvml()
    sign = nvml_gpu_signer(0, nv)  # type: ignore[arg-type]
    out = sign(b"\x07" * 32)
    assert out.report[4:36] == b"\x07" * 32 and out.chain_der == GPU.chain_der
    assert "shutdown" not in nv.calls  # NVML stays up between rounds


@pytest.mark.parametrize(
    ("nv", "why"),
    [
        (FakeNvml(cc=0), "confidential-computing mode is off"),
        (FakeNvml(driver=False), "no NVIDIA driver"),
        (FakeNvml(cc_supported=False), "no confidential-computing support"),
    ],
)
def test_nvml_signer_says_why_not(nv: FakeNvml, why: str) -> None:
    with pytest.raises(GpuSignerUnavailable, match=why):
        nvml_gpu_signer(0, nv)  # type: ignore[arg-type]


def test_real_pynvml_without_driver_says_so() -> None:
    signer, name, why = probe_gpu_signer(0, nvattest="lightfence-no-such-nvattest")
    assert signer is None and name == ""
    assert why[0].startswith("nvml: ") and why[1].startswith("nvattest: ")
    assert "not found on PATH" in why[1]


def _fake_nvattest(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "nvattest"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_nvattest_signer(tmp_path: Path) -> None:
    nonce = b"\x05" * 32
    doc = {
        "evidences": [
            {
                "arch": "HOPPER",
                "nonce": nonce.hex(),
                "evidence": base64.b64encode(GPU.report(nonce)).decode(),
                "certificate": base64.b64encode(_pem()).decode(),
            }
        ],
        "result_code": 0,
        "result_message": "Ok",
    }
    (tmp_path / "out.json").write_text(json.dumps(doc))
    exe = _fake_nvattest(tmp_path, f"cat {tmp_path / 'out.json'}\n")
    out = nvattest_gpu_signer(0, exe)(nonce)
    assert out.report[4:36] == nonce and out.chain_der == GPU.chain_der
    bad = _fake_nvattest(tmp_path, "echo 'no GPU found' >&2; exit 3\n")
    with pytest.raises(GpuSignerUnavailable, match="no GPU found"):
        nvattest_gpu_signer(0, bad)(nonce)
    garbage = _fake_nvattest(tmp_path, "echo '{\"evidences\": []}'\n")
    with pytest.raises(GpuSignerUnavailable, match="expected JSON"):
        nvattest_gpu_signer(0, garbage)(nonce)
    assert os.access(exe, os.X_OK)
