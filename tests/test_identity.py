"""Identity providers. The nvml provider is exercised against a stand-in NVML module because no
NVIDIA GPU or driver exists on the test machine; the real pynvml is used for the no-driver case."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import (
    Attestation,
    DeviceIdentity,
    IdentityError,
    attestation_nonce,
    compute_device_id,
    load_identity,
)
from lightfence.model.trust import TrustLevel


class FakeNVMLError(Exception):
    pass


def fake_nvml(serial_supported: bool = True) -> types.ModuleType:
    nv = types.ModuleType("fake_pynvml")
    nv_any: Any = nv
    nv_any.NVMLError = FakeNVMLError
    nv_any.nvmlInit = lambda: None
    nv_any.nvmlShutdown = lambda: None
    nv_any.nvmlDeviceGetCount = lambda: 1
    nv_any.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)
    nv_any.nvmlDeviceGetUUID = lambda h: "GPU-1234"
    nv_any.nvmlDeviceGetName = lambda h: b"NVIDIA H100"
    nv_any.nvmlDeviceGetArchitecture = lambda h: 9

    def serial(h: object) -> str:
        if not serial_supported:
            raise FakeNVMLError("not supported")
        return "1650123456789"

    nv_any.nvmlDeviceGetSerial = serial
    return nv


def test_software_identity_is_honest_about_its_trust_level(tmp_path: Path) -> None:
    key, ident = load_identity("software", tmp_path / "dev.key")
    assert ident.trust_level is TrustLevel.SOFTWARE
    assert ident.public_key == key.public_bytes
    assert ident.device_id == compute_device_id(key.public_bytes, {})


def test_nvml_identity_binds_the_gpu_into_the_device_id(tmp_path: Path) -> None:
    key, ident = load_identity("nvml", tmp_path / "dev.key", nvml=fake_nvml())
    assert ident.trust_level is TrustLevel.GPU_BOUND
    assert ident.attributes["gpu_uuid"] == "GPU-1234"
    assert ident.attributes["gpu_name"] == "NVIDIA H100"
    assert ident.device_id != compute_device_id(key.public_bytes, {})
    _, no_serial = load_identity("nvml", tmp_path / "dev.key", nvml=fake_nvml(False))
    assert no_serial.attributes["gpu_serial"] == "unavailable"


def test_nvml_without_driver_gives_a_clear_message(tmp_path: Path) -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present here")
    except pynvml.NVMLError:
        pass
    with pytest.raises(IdentityError, match="no NVIDIA driver"):
        load_identity("nvml", tmp_path / "dev.key")
    assert not (tmp_path / "dev.key").exists()  # no key left behind by a failed identity


def test_unknown_provider_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="unknown identity provider"):
        load_identity("tpm", tmp_path / "k")


def test_attestation_hook_binds_the_key_hash(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def hook(nonce: bytes) -> Attestation:
        seen.append(nonce)
        return Attestation("test", nonce, b"report")

    key, ident = load_identity("software", tmp_path / "k", attestation=hook)
    assert seen == [attestation_nonce(key.public_bytes)]
    assert ident.trust_level is TrustLevel.ATTESTED

    def wrong(nonce: bytes) -> Attestation:
        return Attestation("test", bytes(32), b"report")

    with pytest.raises(IdentityError, match="nonce"):
        load_identity("software", tmp_path / "k", attestation=wrong)


def test_attested_level_cannot_be_claimed_without_binding_evidence() -> None:
    key = SigningKey.generate()
    with pytest.raises(ValueError, match="attested"):
        DeviceIdentity("software", TrustLevel.ATTESTED, key.public_bytes)


def test_identity_json_round_trip_and_tamper_check(tmp_path: Path) -> None:
    _, ident = load_identity("nvml", tmp_path / "k", nvml=fake_nvml())
    d = ident.to_json_dict()
    assert DeviceIdentity.from_json_dict(d) == ident
    d["attributes"]["gpu_uuid"] = "GPU-other"
    with pytest.raises(ValueError, match="does not match"):
        DeviceIdentity.from_json_dict(d)


def test_trust_levels_are_ordered() -> None:
    assert TrustLevel.SOFTWARE.rank < TrustLevel.GPU_BOUND.rank < TrustLevel.ATTESTED.rank
