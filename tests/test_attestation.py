"""Appraisal of NVIDIA GPU evidence: the real Hopper sample, the stand-in, and bad evidence."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from lightfence.attestation import (
    Appraisal,
    AppraisalPolicy,
    Revocation,
    appraise,
    default_policy,
    load_roots,
    pem_chain_to_der,
)
from lightfence.attestation.certs import ChainCache, ChainError, split_der
from lightfence.attestation.spdm import MAX_REPORT_BYTES
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot

DATA = Path(__file__).parent / "data" / "nvidia"
REPORT = bytes.fromhex((DATA / "hopper_report.hex").read_text().strip())
CHAIN = pem_chain_to_der((DATA / "hopper_cert_chain.pem").read_bytes())
NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
POLICY = default_policy()
NOW = time.time()


def _appraise(report: bytes = REPORT, chain: bytes = CHAIN, nonce: bytes = NONCE) -> Appraisal:
    return appraise(report, chain, nonce, POLICY, NOW)


def test_real_hopper_sample_is_valid() -> None:
    a = _appraise()
    assert a.ok, a.reason
    assert a.nonce == NONCE
    assert a.gpu is not None
    assert a.gpu.hwmodel == "GH100 A01 GSP BROM"
    assert a.gpu.ueid == "478176379286082186618948445787393647364802107249"
    assert len(a.gpu.gpu_id) == 32
    assert a.driver_version == "550.90.07"
    assert a.vbios_version == "96.00.9f.00.01"
    assert len(a.measurements) == 64
    assert a.revocation.startswith("skipped")
    assert a.root_fingerprint == (
        "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
    )
    assert "valid: GPU" in a.summary()


def test_wrong_nonce() -> None:
    a = _appraise(nonce=bytes(32))
    assert not a.ok and a.reason.startswith("nonce mismatch")
    assert not _appraise(nonce=NONCE[:31]).ok


def test_missing_or_wrong_root() -> None:
    assert "no trusted root" in appraise(REPORT, CHAIN, NONCE, AppraisalPolicy(()), NOW).reason
    other = AppraisalPolicy((GpuTestRoot.create().cert,))
    a = appraise(REPORT, CHAIN, NONCE, other, NOW)
    assert not a.ok and "not the configured root" in a.reason
    # Without the GPU's own copy of the root, the chain must still lead to the configured one.
    no_copy = b"".join(split_der(CHAIN)[:-1])
    assert _appraise(chain=no_copy).ok
    assert "does not lead" in appraise(REPORT, no_copy, NONCE, other, NOW).reason


def test_unreadable_root_file(tmp_path: Path) -> None:
    with pytest.raises(ChainError, match="cannot read"):
        load_roots(tmp_path / "absent.pem")
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ChainError, match="no PEM"):
        load_roots(tmp_path / "bad.pem")


def test_revocation_required_is_refused_offline() -> None:
    policy = AppraisalPolicy(POLICY.roots, Revocation.REQUIRE)
    a = appraise(REPORT, CHAIN, NONCE, policy, NOW)
    assert not a.ok and "OCSP" in a.reason


def test_truncated_and_oversized() -> None:
    for n in [0, 1, 36, 37, 45, 100, len(REPORT) - 97, len(REPORT) - 1]:
        a = _appraise(report=REPORT[:n])
        assert not a.ok and a.reason, n
    assert "trailing" in _appraise(report=REPORT + b"\x00").reason
    assert "exceeds" in _appraise(report=REPORT + bytes(MAX_REPORT_BYTES)).reason
    for n in [0, 1, 100, len(CHAIN) - 1]:
        assert not _appraise(chain=CHAIN[:n]).ok, n
    assert "exceeds" in _appraise(chain=CHAIN * 10).reason
    assert "40 certificates" in _appraise(chain=CHAIN * 8).reason
    assert not _appraise(chain=CHAIN + CHAIN[:1]).ok


def test_expired_window() -> None:
    a = appraise(REPORT, CHAIN, NONCE, POLICY, 0.0)  # 1970: before the chain was issued
    assert not a.ok and "validity" in a.reason


def test_random_single_byte_corruptions_are_rejected() -> None:
    """1,000 random flips over report and chain: each rejected with a reason, none raises."""
    rng = random.Random(16)
    blob = REPORT + CHAIN
    for _ in range(1000):
        pos = rng.randrange(len(blob))
        bad = bytearray(blob)
        bad[pos] ^= rng.randrange(1, 256)
        a = _appraise(report=bytes(bad[: len(REPORT)]), chain=bytes(bad[len(REPORT) :]))
        assert not a.ok and a.reason, pos


def test_standin_appraises_against_its_test_root_only() -> None:
    root = GpuTestRoot.create()
    gpu = GpuStandIn(root)
    nonce = bytes(range(32))
    report = gpu.report(nonce)
    a = appraise(report, gpu.chain_der, nonce, AppraisalPolicy((root.cert,)), NOW)
    assert a.ok, a.reason
    assert a.gpu is not None and a.gpu.hwmodel == "LF-TEST GPU BROM"
    assert a.driver_version == "550.90.07"
    assert not appraise(report, gpu.chain_der, nonce, POLICY, NOW).ok  # not NVIDIA's root
    # Another stand-in's report does not verify with this one's chain.
    other = GpuStandIn(root).report(nonce)
    assert (
        "signature"
        in appraise(other, gpu.chain_der, nonce, AppraisalPolicy((root.cert,)), NOW).reason
    )


def test_wrong_algorithm_is_rejected() -> None:
    root = GpuTestRoot.create()
    gpu = GpuStandIn(root, hash_algorithm=hashes.SHA256())
    nonce = bytes(32)
    a = appraise(gpu.report(nonce), gpu.chain_der, nonce, AppraisalPolicy((root.cert,)), NOW)
    assert not a.ok and "ECDSA/SHA-384" in a.reason


def test_chain_cache_reuses_only_valid_chains_inside_their_window() -> None:
    cache = ChainCache(max_entries=2)
    policy = AppraisalPolicy(POLICY.roots, chain_cache=cache)
    first = appraise(REPORT, CHAIN, NONCE, policy, NOW)
    second = appraise(REPORT, CHAIN, NONCE, policy, NOW)
    assert first == second and first.ok and cache.hits == 1
    # A corrupt report still fails on its own signature with a cached chain.
    bad = bytearray(REPORT)
    bad[-1] ^= 1
    assert "signature" in appraise(bytes(bad), CHAIN, NONCE, policy, NOW).reason
    # Outside the validity window the cache is not used, and the chain fails again.
    assert "validity" in appraise(REPORT, CHAIN, NONCE, policy, 0.0).reason
    # A bad chain is never cached; another root set is another entry.
    assert not appraise(REPORT, CHAIN[:-1], NONCE, policy, NOW).ok
    other = AppraisalPolicy((GpuTestRoot.create().cert,), chain_cache=cache)
    assert not appraise(REPORT, CHAIN, NONCE, other, NOW).ok
