"""Device identity: who answers the challenges, and how far that answer can be trusted.

A device identity is an Ed25519 public key, optional hardware attributes read from the GPU, and
optional attestation evidence. The device id is a hash over the key and the attributes, so an id
names one key on one GPU and anyone can recompute it. Each identity carries a trust level that
is copied into every measurement record and shown on every verdict:

- `software`: a key file on disk. Honest default; the key can be copied, and a copy placed near a
  landmark answers fast from the wrong place.
- `gpu-bound`: the same key file, with the GPU's UUID, serial and architecture (read through
  NVML) bound into the device id. It names the GPU; it does not stop the key being copied.
- `attested`: hardware attestation evidence (NVIDIA confidential computing) whose nonce is the
  hash of the device key, binding the key to an attested GPU. The evidence is carried for an
  appraiser (NVIDIA's verifier); lightfence checks the binding, not NVIDIA's certificate chain.

Attestation is collected once, when the identity is loaded, never inside a timed round.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lightfence.crypto.keys import PUBLIC_KEY_LEN, SigningKey, load_or_create
from lightfence.extras import install_hint
from lightfence.model.trust import TrustLevel

DEVICE_ID_DOMAIN = b"lightfence/device-id/v1\x00"
ATTESTATION_NONCE_DOMAIN = b"lightfence/attestation-nonce/v1\x00"
DEVICE_ID_LEN = 16
"""Bytes of SHA-256 kept in a device id (32 hex digits)."""


class IdentityError(Exception):
    """An identity provider cannot produce an identity here (no driver, no GPU, bad key file)."""


def compute_device_id(public_key: bytes, attributes: Mapping[str, str]) -> str:
    """Hex device id: SHA-256 over domain, raw key and sorted attributes, cut to 16 bytes."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise ValueError(f"device public key must be {PUBLIC_KEY_LEN} bytes")
    h = hashlib.sha256(DEVICE_ID_DOMAIN + public_key)
    for name in sorted(attributes):
        for part in (name, attributes[name]):
            raw = part.encode()
            h.update(len(raw).to_bytes(4, "big") + raw)
    return h.digest()[:DEVICE_ID_LEN].hex()


def attestation_nonce(public_key: bytes) -> bytes:
    """The 32-byte nonce an attestation report must carry to bind the device key."""
    return hashlib.sha256(ATTESTATION_NONCE_DOMAIN + public_key).digest()


@dataclass(frozen=True)
class Attestation:
    """Hardware attestation evidence gathered for a device key."""

    kind: str
    """Which collector produced it: `nvml-cc` (NVML confidential-computing report) or `nvattest`."""
    nonce: bytes
    """The nonce the hardware signed into its report; must equal attestation_nonce(public key)."""
    evidence: bytes
    """The opaque report (and certificate chain) for an appraiser such as NVIDIA's verifier."""

    def binds(self, public_key: bytes) -> bool:
        return self.nonce == attestation_nonce(public_key)

    def to_json_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "nonce": self.nonce.hex(),
            "evidence": base64.b64encode(self.evidence).decode(),
        }

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> Attestation:
        try:
            return cls(
                kind=str(d["kind"]),
                nonce=bytes.fromhex(d["nonce"]),
                evidence=base64.b64decode(d["evidence"], validate=True),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed attestation: {exc}") from None


@dataclass(frozen=True)
class DeviceIdentity:
    """A device's public identity, as put in evidence bundles and the verifier's registry."""

    provider: str
    """Provider that produced it: `software` or `nvml`."""
    trust_level: TrustLevel
    public_key: bytes
    """Raw 32-byte Ed25519 public key that signs challenge answers."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Hardware facts bound into the device id (gpu_uuid, gpu_serial, gpu_architecture, ...)."""
    attestation: Attestation | None = None

    def __post_init__(self) -> None:
        if len(self.public_key) != PUBLIC_KEY_LEN:
            raise ValueError(f"device public key must be {PUBLIC_KEY_LEN} bytes")
        if self.trust_level is TrustLevel.ATTESTED and (
            self.attestation is None or not self.attestation.binds(self.public_key)
        ):
            raise ValueError("trust level 'attested' needs attestation evidence binding the key")
        object.__setattr__(self, "attributes", dict(sorted(self.attributes.items())))

    @property
    def device_id(self) -> str:
        return compute_device_id(self.public_key, self.attributes)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "provider": self.provider,
            "trust_level": self.trust_level.value,
            "public_key": self.public_key.hex(),
            "attributes": dict(self.attributes),
            "attestation": None if self.attestation is None else self.attestation.to_json_dict(),
        }

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> DeviceIdentity:
        """Strict inverse of to_json_dict; rejects an id that does not match key and attributes."""
        try:
            attrs = d.get("attributes") or {}
            if not isinstance(attrs, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()
            ):
                raise ValueError("attributes must map strings to strings")
            att = d.get("attestation")
            identity = cls(
                provider=str(d["provider"]),
                trust_level=TrustLevel(d["trust_level"]),
                public_key=bytes.fromhex(d["public_key"]),
                attributes=attrs,
                attestation=None if att is None else Attestation.from_json_dict(att),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed device identity: {exc}") from None
        if "device_id" in d and d["device_id"] != identity.device_id:
            raise ValueError(
                f"device id {d['device_id']!r} does not match its key and attributes "
                f"(expected {identity.device_id})"
            )
        return identity


AttestationHook = Callable[[bytes], Attestation]
"""Collects attestation evidence for a 32-byte nonce. Called once at load, never while timed."""


def software_identity(key: SigningKey) -> DeviceIdentity:
    return DeviceIdentity(
        provider="software", trust_level=TrustLevel.SOFTWARE, public_key=key.public_bytes
    )


def _import_nvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise IdentityError(f"the nvml identity provider {install_hint('gpu')}") from None
    module: ModuleType = pynvml
    return module


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nvml_attributes(gpu_index: int, nvml: ModuleType | None = None) -> dict[str, str]:
    """UUID, serial, name and architecture of one GPU through NVML.

    `nvml` defaults to the real `pynvml`; tests pass a stand-in because no GPU exists there.
    """
    nv = nvml or _import_nvml()
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        raise IdentityError(
            f"no NVIDIA driver available ({exc}); the nvml identity provider needs a GPU host "
            "with the NVIDIA driver loaded. Use --identity software elsewhere."
        ) from None
    try:
        count = nv.nvmlDeviceGetCount()
        if not 0 <= gpu_index < count:
            raise IdentityError(f"GPU index {gpu_index} out of range: this host has {count} GPU(s)")
        handle = nv.nvmlDeviceGetHandleByIndex(gpu_index)
        attrs = {
            "gpu_uuid": _text(nv.nvmlDeviceGetUUID(handle)),
            "gpu_name": _text(nv.nvmlDeviceGetName(handle)),
            "gpu_architecture": str(int(nv.nvmlDeviceGetArchitecture(handle))),
        }
        try:
            attrs["gpu_serial"] = _text(nv.nvmlDeviceGetSerial(handle))
        except nv.NVMLError:
            attrs["gpu_serial"] = "unavailable"  # consumer boards have no serial in NVML
        return attrs
    except nv.NVMLError as exc:
        raise IdentityError(f"NVML query failed on GPU {gpu_index}: {exc}") from None
    finally:
        nv.nvmlShutdown()


def nvml_cc_attestation_hook(gpu_index: int = 0, nvml: ModuleType | None = None) -> AttestationHook:
    """Attestation through NVML's confidential-computing report (Hopper and later, CC mode on)."""

    def collect(nonce: bytes) -> Attestation:
        nv = nvml or _import_nvml()
        try:
            nv.nvmlInit()
            handle = nv.nvmlDeviceGetHandleByIndex(gpu_index)
            report = nv.nvmlDeviceGetConfComputeGpuAttestationReport(handle, nonce)
            certs = nv.nvmlDeviceGetConfComputeGpuCertificate(handle)
        except nv.NVMLError as exc:
            raise IdentityError(
                f"confidential-computing attestation unavailable on GPU {gpu_index}: {exc}"
            ) from None
        finally:
            nv.nvmlShutdown()
        body = bytes(report.attestationReport[: report.attestationReportSize])
        chain = bytes(certs.attestationCertChain[: certs.attestationCertChainSize])
        evidence = len(body).to_bytes(4, "big") + body + chain
        return Attestation(kind="nvml-cc", nonce=bytes(report.nonce), evidence=evidence)

    return collect


def nvattest_hook(executable: str = "nvattest") -> AttestationHook:
    """Attestation through NVIDIA's `nvattest` command-line tool, when it is installed."""

    def collect(nonce: bytes) -> Attestation:
        path = shutil.which(executable)
        if path is None:
            raise IdentityError(f"{executable} not found on PATH; install NVIDIA's attestation SDK")
        proc = subprocess.run(
            [path, "collect-evidence", "--device", "gpu", "--nonce", nonce.hex()],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[:500]
            raise IdentityError(f"{executable} failed ({proc.returncode}): {err}")
        # The JSON carries one evidence per GPU, each echoing the nonce; an appraiser checks it.
        return Attestation(kind="nvattest", nonce=nonce, evidence=proc.stdout)

    return collect


def load_identity(
    provider: str,
    key_path: Path,
    *,
    gpu_index: int = 0,
    attestation: AttestationHook | None = None,
    nvml: ModuleType | None = None,
) -> tuple[SigningKey, DeviceIdentity]:
    """The device key (created on first use) and its identity from the named provider."""
    if provider not in PROVIDERS:
        raise IdentityError(f"unknown identity provider {provider!r}; choose one of {PROVIDERS}")
    if provider == "software":
        attrs: dict[str, str] = {}
        level = TrustLevel.SOFTWARE
    else:
        attrs = read_nvml_attributes(gpu_index, nvml)  # before any key is created
        level = TrustLevel.GPU_BOUND
    key, _ = load_or_create(key_path)
    evidence = None
    if attestation is not None:
        evidence = attestation(attestation_nonce(key.public_bytes))
        if not evidence.binds(key.public_bytes):
            raise IdentityError("attestation report does not carry the device key's nonce")
        level = TrustLevel.ATTESTED
    return key, DeviceIdentity(provider, level, key.public_bytes, attrs, evidence)


PROVIDERS = ("software", "nvml")
