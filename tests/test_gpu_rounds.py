"""GPU-signed rounds: nonce binding, the landmark's record, bundles, verdicts that say what they
locate, the key-GPU mismatch, and calibration floors."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.attestation import AppraisalPolicy, default_policy
from lightfence.core.verdict import VerdictKind
from lightfence.evidence.bundle import EvidenceBundle, check_bundle, load_bundle, save_bundle
from lightfence.evidence.calibration import (
    CalibrationError,
    parse_calibration,
    sign_calibration,
)
from lightfence.evidence.verdict import device_verdict
from lightfence.geo.sphere import great_circle_km
from lightfence.identity.device import software_identity
from lightfence.model.registry import LandmarkEntry
from lightfence.model.trust import Locates
from lightfence.protocol.gpu_round import (
    GpuEvidence,
    GpuRoundError,
    GpuRoundRecord,
    gpu_nonce,
    verify_gpu_round,
)
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot, SigningTime, emulate_gpu_round
from lightfence.units import C_VACUUM_KM_PER_MS
from record_factory import make_signed_record, seeded_key

NOW = 1_764_000_000_000_000_000
ROOT = GpuTestRoot.create()
POLICY = AppraisalPolicy((ROOT.cert,))
GPU = GpuStandIn(ROOT, signing_time=SigningTime(floor_ms=5.0, median_extra_ms=1.0))
DEV = seeded_key("device")
IDENT = software_identity(DEV)
SITES = {
    "sin": (1.2897, 103.8501),
    "kul": (3.1390, 101.6869),
    "hkg": (22.3193, 114.1694),
    "tyo": (35.6762, 139.6503),
    "fra": (50.1109, 8.6821),
}
KEYS = {lid: seeded_key(f"lm-{lid}") for lid in SITES}
ENTRIES = {
    lid: LandmarkEntry(lid, KEYS[lid].public_bytes, lat, lon, 1.0, "127.0.0.1:7800")
    for lid, (lat, lon) in SITES.items()
}
SHENZHEN = (22.5431, 114.0579)
SINGAPORE_DC = (1.3521, 103.8198)


def _min_rtt_ms(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The fastest round trip physics allows between two points (vacuum)."""
    d = float(great_circle_km(a[0], a[1], b[0], b[1]))
    return 2.0 * d / C_VACUUM_KM_PER_MS


def _gpu_rounds(
    at: tuple[float, float], rng: random.Random, slack: float = 1.6, gpu: GpuStandIn = GPU
) -> tuple[tuple[GpuRoundRecord, GpuEvidence], ...]:
    out = []
    for lid, site in SITES.items():
        r = emulate_gpu_round(
            landmark_id=lid,
            landmark_key=KEYS[lid],
            device_id=IDENT.device_id,
            gpu=gpu,
            path_rtt_ms=_min_rtt_ms(at, site) * slack + 0.05,
            policy=POLICY,
            rng=rng,
            utc_ns=NOW,
        )
        assert r.record is not None, r.appraisal.reason
        out.append((r.record, r.evidence))
    return tuple(out)


def _key_records(at: tuple[float, float], slack: float = 1.0) -> tuple[object, ...]:
    recs = []
    for lid, site in SITES.items():
        rtt_ns = round((_min_rtt_ms(at, site) * slack + 0.05) * 1e6)
        recs.append(
            make_signed_record(
                KEYS[lid], DEV, landmark_id=lid, rtts_ns=(rtt_ns,), measured_at_unix_ns=NOW
            )
        )
    return tuple(recs)


def _bundle(
    key_at: tuple[float, float] | None, gpu_at: tuple[float, float] | None, seed: int = 1
) -> EvidenceBundle:
    rng = random.Random(seed)
    recs = _key_records(key_at) if key_at else ()
    gpu_rounds = _gpu_rounds(gpu_at, rng) if gpu_at else ()
    return EvidenceBundle(IDENT, recs, tuple(ENTRIES.values()), NOW, gpu_rounds)  # type: ignore[arg-type]


def test_gpu_nonce_binds_every_field() -> None:
    args = (b"n" * 32, "sin", IDENT.device_id, b"s" * 16, 3)
    base = gpu_nonce(*args)
    assert len(base) == 32
    assert gpu_nonce(b"m" * 32, *args[1:]) != base
    assert gpu_nonce(args[0], "hkg", *args[2:]) != base
    assert gpu_nonce(*args[:2], "0" * 32, *args[3:]) != base
    assert gpu_nonce(*args[:3], b"t" * 16, 3) != base
    assert gpu_nonce(*args[:4], 4) != base


def test_record_round_trip_and_offline_check() -> None:
    (rec, ev), *_ = _gpu_rounds(SHENZHEN, random.Random(2))
    assert GpuRoundRecord.from_json_dict(rec.to_json_dict()) == rec
    assert GpuEvidence.from_json_dict(ev.to_json_dict()) == ev
    a = verify_gpu_round(rec, ev, KEYS["sin"].public_bytes, POLICY, NOW / 1e9)
    assert a.ok and a.gpu is not None and a.gpu.gpu_id == rec.gpu_id
    with pytest.raises(GpuRoundError, match="landmark signature"):
        verify_gpu_round(
            dataclasses.replace(rec, rtt_ns=rec.rtt_ns - 1), ev, KEYS["sin"].public_bytes, POLICY, 0
        )
    with pytest.raises(GpuRoundError, match="landmark key"):
        verify_gpu_round(rec, ev, KEYS["hkg"].public_bytes, POLICY, NOW / 1e9)
    with pytest.raises(GpuRoundError, match="not the one the landmark timed"):
        verify_gpu_round(
            rec,
            GpuEvidence(GPU.report(bytes(32)), ev.chain_der),
            KEYS["sin"].public_bytes,
            POLICY,
            0,
        )
    with pytest.raises(GpuRoundError, match="GPU evidence"):
        verify_gpu_round(rec, ev, KEYS["sin"].public_bytes, default_policy(), NOW / 1e9)
    bad = rec.to_json_dict()
    bad["extra"] = 1
    with pytest.raises(GpuRoundError, match="unknown"):
        GpuRoundRecord.from_json_dict(bad)


def test_landmark_issues_no_record_for_a_report_over_another_nonce() -> None:
    class Replayer(GpuStandIn):
        def report(self, nonce: bytes, rng: random.Random | None = None) -> bytes:
            return super().report(bytes(32), rng)  # a report made earlier, for another nonce

    r = emulate_gpu_round(
        landmark_id="sin", landmark_key=KEYS["sin"], device_id=IDENT.device_id,
        gpu=Replayer(ROOT), path_rtt_ms=1.0, policy=POLICY, rng=random.Random(3), utc_ns=NOW,
    )  # fmt: skip
    assert r.record is None and "nonce mismatch" in r.appraisal.reason


def test_bundle_round_trip_and_check(tmp_path: Path) -> None:
    b = _bundle(SHENZHEN, SHENZHEN)
    save_bundle(b, tmp_path / "b.json")
    assert load_bundle(tmp_path / "b.json") == b
    check = check_bundle(b, ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY)
    assert check.all_valid and len(check.gpu_accepted) == 5
    assert any("revocation skipped" in n for n in check.notes)
    # Without a configured GPU root nothing is taken on the landmark's word.
    check = check_bundle(b, ENTRIES, now_unix_ns=NOW)
    assert not check.gpu_accepted and "no GPU root" in check.gpu_rejected[0].reason
    # NVIDIA's root does not accept the stand-in's test chain.
    check = check_bundle(b, ENTRIES, now_unix_ns=NOW, gpu_policy=default_policy())
    assert not check.gpu_accepted
    # Another enrolled GPU: swapped.
    check = check_bundle(b, ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY, enrolled_gpu_id="0" * 32)
    assert not check.gpu_accepted and "swapped" in check.gpu_rejected[0].reason
    # A replayed round counts once.
    dup = dataclasses.replace(b, gpu_rounds=b.gpu_rounds + b.gpu_rounds[:1])
    check = check_bundle(dup, ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY)
    assert len(check.gpu_accepted) == 5 and "replayed" in check.gpu_rejected[0].reason


def test_moved_key_is_caught() -> None:
    """Key next to Singapore, GPU in Shenzhen: key VERIFIED, GPU not, mismatch alert."""
    check = check_bundle(
        _bundle(SINGAPORE_DC, SHENZHEN), ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY
    )
    v = device_verdict(check, "outside:CN,HK,MO")
    assert v.key is not None and v.key.kind is VerdictKind.VERIFIED
    assert v.gpu is not None and v.gpu.kind is not VerdictKind.VERIFIED
    assert v.kind is VerdictKind.INCONSISTENT and v.locates is Locates.GPU
    assert v.alerts == ("key-gpu-mismatch",) and v.mismatch is not None
    d = v.to_dict()
    assert d["key"]["locates"] == "key" and d["gpu"]["locates"] == "gpu"


def test_honest_device_and_requirement() -> None:
    check = check_bundle(
        _bundle(SINGAPORE_DC, SINGAPORE_DC), ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY
    )
    v = device_verdict(check, "outside:CN,HK,MO")
    assert v.mismatch is None and v.locates is Locates.GPU
    key_only = check_bundle(_bundle(SINGAPORE_DC, None), ENTRIES, now_unix_ns=NOW)
    v = device_verdict(key_only, "outside:CN,HK,MO")
    assert v.locates is Locates.KEY and v.kind is VerdictKind.VERIFIED
    v = device_verdict(key_only, "outside:CN,HK,MO", required=Locates.GPU)
    assert v.kind is VerdictKind.UNVERIFIED and "requires" in v.reason


def test_calibration_floor_tightens_and_is_checked() -> None:
    signer = seeded_key("calibrator")
    doc = sign_calibration(
        [
            {
                "hwmodel": "LF-TEST GPU BROM",
                "vbios_version": "96.00.9f.00.01",
                "s_floor_ns": 5_000_000,
            }
        ],
        signer,
    )
    cal = parse_calibration(doc, {signer.public_bytes})
    b = _bundle(None, SINGAPORE_DC)
    plain = device_verdict(
        check_bundle(b, ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY), "outside:CN"
    )
    floored = device_verdict(
        check_bundle(b, ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY, calibration=cal), "outside:CN"
    )
    assert plain.gpu is not None and floored.gpu is not None
    for r0, r1 in zip(plain.gpu.cap_radii_km(), floored.gpu.cap_radii_km(), strict=True):
        assert r0 - r1 == pytest.approx(5.0 * C_VACUUM_KM_PER_MS / 2, rel=1e-2)
    with pytest.raises(CalibrationError, match="not trusted"):
        parse_calibration(doc, {seeded_key("other").public_bytes})
    doc["entries"][0]["s_floor_ns"] = 9_000_000
    with pytest.raises(CalibrationError, match="signature"):
        parse_calibration(doc, {signer.public_bytes})


_ALLOWED = (48.0, 10.0, 1500.0)  # within 1,500 km of southern Germany
_POLICY_TEXT = f"within:{_ALLOWED[0]},{_ALLOWED[1]},{_ALLOWED[2]}"


@settings(max_examples=25, deadline=None)
@given(
    gpu_lat=st.floats(-60, 70),
    gpu_lon=st.floats(-180, 180),
    key_mode=st.sampled_from(["moved", "cloned", "relayed", "none"]),
    slack=st.floats(1.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_gpu_verdict_never_verified_when_gpu_outside(
    gpu_lat: float, gpu_lon: float, key_mode: str, slack: float, seed: int
) -> None:
    """Whatever the key does, a gpu verdict is never VERIFIED with the GPU outside the region."""
    gpu_at = (gpu_lat, gpu_lon)
    d = float(great_circle_km(gpu_lat, gpu_lon, _ALLOWED[0], _ALLOWED[1]))
    if d <= _ALLOWED[2] * 1.01:
        return  # the GPU is inside (or on the edge of) the allowed region: nothing to prove
    rng = random.Random(seed)
    # The key answers from inside the region (moved, or a clone), or relays to the GPU.
    key_at = {"moved": (48.1, 11.6), "cloned": (50.1, 8.7), "relayed": gpu_at, "none": None}[
        key_mode
    ]
    recs = _key_records(key_at, slack) if key_at else ()
    b = EvidenceBundle(IDENT, recs, tuple(ENTRIES.values()), NOW, _gpu_rounds(gpu_at, rng, slack))  # type: ignore[arg-type]
    signer = seeded_key("calibrator")
    cal = parse_calibration(
        sign_calibration(
            [
                {
                    "hwmodel": "LF-TEST GPU BROM",
                    "vbios_version": "96.00.9f.00.01",
                    "s_floor_ns": 5_000_000,
                }
            ],
            signer,
        ),
        {signer.public_bytes},
    )
    check = check_bundle(b, ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY, calibration=cal)
    v = device_verdict(check, _POLICY_TEXT, required=Locates.GPU)
    assert v.gpu is not None and v.gpu.kind is not VerdictKind.VERIFIED
    assert v.kind is not VerdictKind.VERIFIED and v.locates is Locates.GPU


def test_verify_cli_rechecks_gpu_rounds_offline(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from lightfence.cli import main as _register  # noqa: F401  (imports every command module)
    from lightfence.cli.app import app
    from lightfence.model.registry import registry_json

    save_bundle(_bundle(SINGAPORE_DC, SHENZHEN), tmp_path / "b.json")
    (tmp_path / "lm.json").write_text(json.dumps(registry_json(ENTRIES.values())))
    (tmp_path / "root.pem").write_bytes(ROOT.pem())
    base = ["verify", str(tmp_path / "b.json"), "--landmark-keys", str(tmp_path / "lm.json")]
    # The test bundle is dated NOW (2025): widen the age rule rather than re-date it.
    base += ["--policy", "outside:CN,HK,MO", "--json", "--max-age-hours", "1000000"]
    result = CliRunner().invoke(app, [*base, "--gpu-root", str(tmp_path / "root.pem")])
    out = json.loads(result.output)
    assert result.exit_code == 1
    assert out["verdict"]["verdict"] == "VERIFIED" and out["verdict"]["locates"] == "key"
    dv = out["device_verdict"]
    assert dv["verdict"] == "INCONSISTENT" and dv["locates"] == "gpu"
    assert dv["alerts"] == ["key-gpu-mismatch"] and len(out["gpu_accepted"]) == 5
    # With NVIDIA's root (the default) the stand-in's rounds are rejected, with the reason.
    result = CliRunner().invoke(app, [*base, "--require", "gpu"])
    out = json.loads(result.output)
    assert result.exit_code == 1 and not out["gpu_accepted"]
    assert "certificate chain" in out["gpu_rejected"][0]["reason"]
    assert out["device_verdict"]["verdict"] == "UNVERIFIED"
    result = CliRunner().invoke(app, [*base, "--gpu-root", str(tmp_path / "absent.pem")])
    assert result.exit_code == 2 and "cannot read root file" in result.output


def test_attested_identity_evidence_is_appraised_not_only_bound() -> None:
    import base64

    from lightfence.attestation.certs import split_der
    from lightfence.identity.device import Attestation, DeviceIdentity, attestation_nonce
    from lightfence.model.trust import TrustLevel

    nonce = attestation_nonce(DEV.public_bytes)
    report = GPU.report(nonce)
    pem = b"".join(
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
        for der in split_der(GPU.chain_der)
    )
    att = Attestation("nvml-cc", nonce, len(report).to_bytes(4, "big") + report + pem)
    ident = DeviceIdentity("software", TrustLevel.ATTESTED, DEV.public_bytes, {}, att)
    b = EvidenceBundle(ident, (), tuple(ENTRIES.values()), NOW)
    notes = check_bundle(b, ENTRIES, now_unix_ns=NOW, gpu_policy=POLICY).notes
    assert any("attestation evidence valid: GPU" in n and "locates nothing" in n for n in notes)
    notes = check_bundle(b, ENTRIES, now_unix_ns=NOW, gpu_policy=default_policy()).notes
    assert any("attestation evidence rejected: certificate chain" in n for n in notes)
    # Evidence over another nonce (bound to no key) is caught by the binding check first.
    other = Attestation("nvml-cc", bytes(32), att.evidence)
    with pytest.raises(ValueError, match="binding the key"):
        DeviceIdentity("software", TrustLevel.ATTESTED, DEV.public_bytes, {}, other)
