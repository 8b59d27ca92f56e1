"""GPU signers: have the GPU itself sign an SPDM report over a nonce, for GPU-signed rounds.

Two collectors, as NVIDIA ships them:

- `nvml`: NVML's confidential-computing report (`nvmlDeviceGetConfComputeGpuAttestationReport`,
  Hopper and later with CC mode on) and its certificate chain;
- `nvattest`: NVIDIA's attestation CLI (`nvattest collect-evidence --nonce`), which also
  reaches Blackwell through Corelib without CC mode.

`probe_gpu_signer` tries them in order and, where none works, says exactly why; the agent then
falls back to key rounds and its verdicts say `locates: key`. Neither collector has been run on
real hardware here (no GPU on the development machine): the NVML path is tested against a
stand-in NVML module, the nvattest path against a stand-in executable.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from lightfence.attestation import ChainError, pem_chain_to_der

NVATTEST_TIMEOUT_S = 60


class GpuSignerUnavailable(Exception):
    """No GPU signer here; the message says exactly why (no driver, CC mode off, no tool)."""


@dataclass(frozen=True)
class GpuReport:
    """What a GPU returned for one nonce: the SPDM report and its chain (DER, leaf first)."""

    report: bytes
    chain_der: bytes


GpuSigner = Callable[[bytes], GpuReport]
"""Signs a 32-byte nonce on the GPU. Called inside a timed round: its time is part of the RTT."""


def _import_nvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise GpuSignerUnavailable(
            "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        ) from None
    module: ModuleType = pynvml
    return module


def nvml_gpu_signer(gpu_index: int = 0, nvml: ModuleType | None = None) -> GpuSigner:
    """A signer through NVML. Checks driver, GPU and CC mode first; never changes a setting.

    NVML stays initialised for the signer's life: nvmlInit per round would add its cost to
    every RTT.
    """
    nv = nvml or _import_nvml()
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        raise GpuSignerUnavailable(f"no NVIDIA driver available ({exc})") from None
    try:
        count = nv.nvmlDeviceGetCount()
        if not 0 <= gpu_index < count:
            raise GpuSignerUnavailable(f"GPU index {gpu_index} out of range: {count} GPU(s)")
        handle = nv.nvmlDeviceGetHandleByIndex(gpu_index)
        try:
            state = nv.nvmlSystemGetConfComputeState()
        except nv.NVMLError as exc:
            raise GpuSignerUnavailable(
                f"this driver or GPU has no confidential-computing support ({exc}); "
                "NVML attestation reports need Hopper or later with CC mode on"
            ) from None
        if int(state.ccFeature) == 0:
            raise GpuSignerUnavailable(
                "confidential-computing mode is off on this host: NVML signs attestation "
                "reports only in CC mode (Hopper). Turning it on is the operator's decision "
                "(it needs a reboot); lightfence never changes it. On Blackwell, use nvattest."
            )
        chain = nv.nvmlDeviceGetConfComputeGpuCertificate(handle)
        chain_der = pem_chain_to_der(
            bytes(chain.attestationCertChain[: chain.attestationCertChainSize])
        )
    except nv.NVMLError as exc:
        nv.nvmlShutdown()
        raise GpuSignerUnavailable(f"NVML query failed on GPU {gpu_index}: {exc}") from None
    except (GpuSignerUnavailable, ChainError) as exc:
        nv.nvmlShutdown()
        raise GpuSignerUnavailable(str(exc)) from None

    def sign(nonce: bytes) -> GpuReport:
        try:
            r = nv.nvmlDeviceGetConfComputeGpuAttestationReport(handle, nonce)
        except nv.NVMLError as exc:
            raise GpuSignerUnavailable(f"GPU {gpu_index} did not sign: {exc}") from None
        return GpuReport(bytes(r.attestationReport[: r.attestationReportSize]), chain_der)

    return sign


def _parse_nvattest(stdout: bytes, gpu_index: int) -> GpuReport:
    try:
        doc = json.loads(stdout)
        if doc.get("result_code", 0) != 0:
            raise GpuSignerUnavailable(f"nvattest: {doc.get('result_message', 'failed')}")
        item = doc["evidences"][gpu_index]
        report = base64.b64decode(item["evidence"], validate=True)
        chain_der = pem_chain_to_der(base64.b64decode(item["certificate"], validate=True))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, binascii.Error) as exc:
        raise GpuSignerUnavailable(f"nvattest output is not the expected JSON: {exc}") from None
    return GpuReport(report, chain_der)


def nvattest_gpu_signer(
    gpu_index: int = 0,
    executable: str = "nvattest",
    run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run,
) -> GpuSigner:
    """A signer through NVIDIA's `nvattest` CLI (a process per report: slow, but sound)."""
    path = shutil.which(executable)
    if path is None:
        raise GpuSignerUnavailable(
            f"{executable} not found on PATH (NVIDIA Attestation SDK CLI; needed on Blackwell)"
        )

    def sign(nonce: bytes) -> GpuReport:
        cmd = [path, "collect-evidence", "--device", "gpu", "--nonce", nonce.hex()]
        proc = run(cmd, capture_output=True, timeout=NVATTEST_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[:300]
            raise GpuSignerUnavailable(f"{executable} failed ({proc.returncode}): {err}")
        return _parse_nvattest(proc.stdout, gpu_index)

    return sign


def probe_gpu_signer(
    gpu_index: int = 0,
    nvml: ModuleType | None = None,
    nvattest: str = "nvattest",
) -> tuple[GpuSigner | None, str, list[str]]:
    """(signer, its name, why each collector is unavailable). signer is None if none works."""
    why: list[str] = []

    def from_nvml() -> GpuSigner:
        return nvml_gpu_signer(gpu_index, nvml)

    def from_nvattest() -> GpuSigner:
        return nvattest_gpu_signer(gpu_index, nvattest)

    makers: tuple[tuple[str, Callable[[], GpuSigner]], ...] = (
        ("nvml", from_nvml),
        ("nvattest", from_nvattest),
    )
    for name, make in makers:
        try:
            return make(), name, why
        except GpuSignerUnavailable as exc:
            why.append(f"{name}: {exc}")
    return None, "", why
