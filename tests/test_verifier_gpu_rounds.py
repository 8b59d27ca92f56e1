"""The verifier service ingests GPU-signed rounds (issue 16): each check's rejection with its
reason, `gpu` verdicts from GPU rounds only, the licence requiring `gpu`, and a moved key's
`key-gpu-mismatch` raised once. SQLite and PostgreSQL; real signatures, the stand-in GPU (the
one mock: no GPU here) under a test root the verifier is configured with."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gpu_fleet_support import FAST, GPU, ROOT, gpu_fleet, gpu_id_of, gpu_round
from gpu_fleet_support import latest_verdict as _latest
from lightfence.attestation import AppraisalPolicy
from lightfence.crypto.keys import SigningKey
from lightfence.evidence.bundle import EvidenceBundle, check_bundle
from lightfence.evidence.calibration import load_calibration
from lightfence.evidence.submit import gpu_rounds_url
from lightfence.evidence.verdict import device_verdict
from lightfence.geo.sphere import great_circle_km
from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord, verify_gpu_round
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot
from lightfence.units import C_VACUUM_KM_PER_MS
from lightfence.verifier import audit_verify
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.errors import BadInput
from lightfence.verifier.evidence import device_bundle
from lightfence.verifier.gpu_ingest import GpuIngestor, GpuRound, PreAppraised, pre_appraise
from lightfence.verifier.ingest import RejectReason
from lightfence.verifier.models import (
    AlertRow,
    AuditRow,
    DeviceRow,
    GpuRoundRow,
    RejectionRow,
)
from lightfence.verifier.registry import Licence, enrol_device, set_landmark_status, set_licence
from lightfence.verifier.service import Service
from record_factory import seeded_key
from verifier_support import ADMIN, LANDMARKS, Fleet, db_url, identity_for, token

__all__ = ["db_url"]

DAY_NS = 86_400 * 10**9


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[Fleet]:
    f = gpu_fleet(db_url, tmp_path)
    yield f
    f.service.close()


def _alerts(fleet: Fleet, kind: str) -> list[AlertRow]:
    with fleet.service.read() as s:
        rows = list(
            s.execute(
                select(AlertRow).where(AlertRow.kind == kind, AlertRow.device_id == fleet.device_id)
            ).scalars()
        )
        s.expunge_all()
        return rows


def test_each_bad_gpu_round_is_rejected_with_its_reason(fleet: Fleet) -> None:
    good = gpu_round(fleet, "fra1", 0.5)
    stranger = seeded_key("not-a-landmark")
    rec, ev = good
    other_root = GpuTestRoot.create()
    cases: dict[RejectReason, GpuRound] = {
        RejectReason.UNKNOWN_LANDMARK: gpu_round(fleet, "xyz9", 0.5, key=stranger),
        RejectReason.UNKNOWN_DEVICE: gpu_round(fleet, "par1", 5.0, device_id=uuid.uuid4().hex),
        # Any change to the signed fields (here a faster RTT) breaks the landmark signature.
        RejectReason.BAD_SIGNATURE: (dataclasses.replace(rec, rtt_ns=rec.rtt_ns // 2), ev),
        RejectReason.STALE: gpu_round(fleet, "ams1", 3.0, at_ns=time.time_ns() - 3 * DAY_NS),
        # Same landmark, session and round, other content (another nonce): a replay.
        RejectReason.REPLAYED: gpu_round(fleet, "fra1", 0.7, session_id=rec.session_id),
        # Genuine evidence from another GPU than the enrolled one (a GPU swap).
        RejectReason.WRONG_GPU: gpu_round(
            fleet, "waw1", 6.0, gpu=GpuStandIn(ROOT, signing_time=FAST)
        ),
    }
    # A GPU whose chain ends at a root the verifier does not trust (the landmark was fooled, or
    # lied): appraised again by the verifier and refused.
    foreign = gpu_round(fleet, "par1", 5.0, gpu=GpuStandIn(other_root), policy_root=other_root)
    # The report is not the one the landmark timed.
    # (The same record with other evidence would be a duplicate of the stored round: the
    # record's hash is the key, and its stored evidence is the one whose digests it signed.)
    rec2, ev2 = gpu_round(fleet, "ams1", 3.0)
    swapped = (rec2, GpuEvidence(gpu_round(fleet, "ams1", 3.0)[1].report, ev2.chain_der))
    assert [o.status for o in fleet.service.ingest_gpu([good], ADMIN)] == ["stored"]
    for reason, bad in cases.items():
        (out,) = fleet.service.ingest_gpu([bad], ADMIN)
        assert (out.status, out.reason) == ("rejected", reason), (reason, out)
        assert out.detail
    for bad in (foreign, swapped):
        (out,) = fleet.service.ingest_gpu([bad], ADMIN)
        assert (out.status, out.reason) == ("rejected", RejectReason.BAD_EVIDENCE), out
    assert "not the one the landmark timed" in out.detail
    # Resubmitting the good round: acknowledged, nothing written.
    assert [o.status for o in fleet.service.ingest_gpu([good], ADMIN)] == ["duplicate"]
    with fleet.service.read() as s:
        assert len(s.execute(select(GpuRoundRow)).all()) == 1
        reasons = {r.reason for r in s.execute(select(RejectionRow)).scalars()}
    assert reasons == {r.value for r in cases} | {RejectReason.BAD_EVIDENCE.value}


def test_no_enrolled_gpu_means_no_gpu_round_counts(db_url: str, tmp_path: Path) -> None:
    fleet = gpu_fleet(db_url, tmp_path, enrol_gpu=False)
    try:
        (out,) = fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
        assert out.reason is RejectReason.WRONG_GPU and "no enrolled GPU" in out.detail
    finally:
        fleet.service.close()


def test_consistent_device_gets_a_gpu_verdict(fleet: Fleet) -> None:
    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    key_only = _latest(fleet)
    assert (key_only.kind, key_only.locates) == ("VERIFIED", "key")
    fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    row = _latest(fleet)
    assert (row.kind, row.locates, row.key_kind, row.alert) == ("VERIFIED", "gpu", "VERIFIED", None)
    assert row.gpu_inputs and row.gpu_inputs[0]["floor_ms"] == FAST.floor_ms
    assert not _alerts(fleet, "key-gpu-mismatch")


def test_moved_key_raises_key_gpu_mismatch_once(fleet: Fleet) -> None:
    # The key answers next to Frankfurt; the GPU signs next to Warsaw, about 900 km away.
    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    fleet.service.ingest_gpu([gpu_round(fleet, "waw1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    row = _latest(fleet)
    assert (row.kind, row.locates, row.key_kind) == ("INCONSISTENT", "gpu", "VERIFIED")
    assert row.alert == "key-gpu-mismatch" and "key-gpu-mismatch" in row.reason
    assert row.implicated == []  # no landmark is to blame for a moved key
    # More rounds, more verdicts: still one open alert, and no plain `inconsistent` one.
    for _ in range(2):
        fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
        fleet.service.ingest_gpu([gpu_round(fleet, "waw1", 0.5)], ADMIN)
        fleet.service.recompute_all()
    assert _latest(fleet).alert == "key-gpu-mismatch"
    # Batch re-verification decides as the service does: the GPU still outranks the key (it
    # used to decide on the key records alone and store VERIFIED here).
    from lightfence.fleet.reverify import reverify

    assert reverify(fleet.service, engine="local").verdicts == 1
    row = _latest(fleet)
    assert (row.kind, row.locates, row.alert) == ("INCONSISTENT", "gpu", "key-gpu-mismatch")
    (alert,) = _alerts(fleet, "key-gpu-mismatch")
    assert alert.count == 1
    assert _alerts(fleet, "inconsistent") == []
    with fleet.service.read() as s:  # every write above is in the audit chain, state included
        report = audit_verify.verify_chain(s)
        entries = [json.loads(p) for (p,) in s.execute(select(AuditRow.payload))]
    assert report.ok, report.problems
    assert any(len(v) == 6 and v[4] == "gpu" for e in entries for v in e.get("verdicts", []))


def test_licence_requiring_gpu_never_verifies_on_the_key(db_url: str, tmp_path: Path) -> None:
    fleet = gpu_fleet(db_url, tmp_path, require="gpu")
    try:
        fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
        fleet.service.recompute_all()
        row = _latest(fleet)
        assert (row.kind, row.locates) == ("UNVERIFIED", "key")
        assert "requires a verdict that locates the GPU" in row.reason
        from lightfence.fleet.reverify import reverify

        assert reverify(fleet.service, engine="local").verdicts == 1
        assert _latest(fleet).kind == "UNVERIFIED"  # and not VERIFIED on the key records
        fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
        fleet.service.recompute_all()
        assert (_latest(fleet).kind, _latest(fleet).locates) == ("VERIFIED", "gpu")
    finally:
        fleet.service.close()


def test_api_gpu_rounds_verdicts_and_tokens_say_gpu(db_url: str, tmp_path: Path) -> None:
    fleet = gpu_fleet(db_url, tmp_path)
    fleet.service.close()
    config = dataclasses.replace(
        fleet.service.config, signing_key_path=str(tmp_path / "verifier.key")
    )
    app = create_app(config, worker=False)
    with TestClient(app) as client:
        service: Service = app.state.service
        admin = token(service, "admin", Role.ADMIN)
        lm = token(service, "lm-fra1", Role.LANDMARK, "fra1")
        h = {"authorization": f"Bearer {lm}"}
        rec, ev = gpu_round(fleet, "fra1", 0.5)
        body = {"gpu_rounds": [{"record": rec.to_json_dict(), "evidence": ev.to_json_dict()}]}
        assert client.post("/gpu-rounds", json=body).status_code == 401
        r = client.post("/gpu-rounds", json=body, headers=h)
        assert r.status_code == 200 and r.json()["stored"] == 1, r.text
        status = client.get("/status", headers={"authorization": f"Bearer {admin}"})
        assert status.json()["gpu_rounds"] == 1
        # A landmark token submits its own rounds only.
        other = gpu_round(fleet, "par1", 5.0)
        r = client.post(
            "/gpu-rounds",
            json={"gpu_rounds": [{"record": other[0].to_json_dict(), "evidence": {}}]},
            headers=h,
        )
        assert r.status_code == 422 and "gpu_rounds[0]" in r.json()["detail"]
        r = client.post(
            "/gpu-rounds",
            json={
                "gpu_rounds": [
                    {"record": other[0].to_json_dict(), "evidence": other[1].to_json_dict()}
                ]
            },
            headers=h,
        )
        assert r.status_code == 403
        ha = {"authorization": f"Bearer {admin}"}
        r = client.post(
            "/gpu-rounds",
            json={
                "gpu_rounds": [
                    {
                        "record": dataclasses.replace(rec, rtt_ns=1).to_json_dict()
                        | {"landmark_signature": rec.landmark_signature.hex()},
                        "evidence": ev.to_json_dict(),
                    }
                ]
            },
            headers=ha,
        )
        assert r.json()["results"][0]["reason"] == "bad_signature"
        rejections = client.get("/rejections", headers=ha).json()
        assert "bad_signature" in {x["reason"] for x in rejections}
        fleet.service = service
        fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
        assert client.post("/verdicts/recompute", headers=ha).status_code == 200
        dev = client.get(f"/devices/{fleet.device_id}", headers=ha).json()
        latest = dev["latest_verdict"]
        assert (latest["verdict"], latest["locates"], latest["key_verdict"]) == (
            "VERIFIED",
            "gpu",
            "VERIFIED",
        )
        assert latest["gpu_rounds"] and dev["licence"]["gpu_id"] == rec.gpu_id
        hist = client.get(f"/devices/{fleet.device_id}/verdicts?geojson=latest", headers=ha)
        shown = hist.json()["verdicts"][0]
        assert shown["locates"] == "gpu" and shown["feasible_geojson"]["type"] == "Feature"
        tok = client.get(f"/devices/{fleet.device_id}/token", headers=ha).json()
        assert (tok["verdict"], tok["locates"]) == ("VERIFIED", "gpu")
        # The evidence bundle carries the GPU rounds: an auditor's `verify` reaches the same.
        doc = client.get(f"/devices/{fleet.device_id}/evidence", headers=ha).json()
    bundle = EvidenceBundle.from_json_dict(doc)
    assert len(bundle.gpu_rounds) == 1
    # Offline with the same signed calibration the verifier trusts (S_floor), as an auditor would.
    signer = bytes.fromhex(
        json.loads((tmp_path / "calibration.json").read_text())["signer_public_key"]
    )
    check = check_bundle(
        bundle,
        {e.id: e for e in bundle.landmarks},
        now_unix_ns=time.time_ns(),
        gpu_policy=AppraisalPolicy((ROOT.cert,)),
        calibration=load_calibration(tmp_path / "calibration.json", {signer}),
        enrolled_gpu_id=rec.gpu_id,
    )
    dv = device_verdict(check, "in:DE", claimed="DE")
    assert (dv.kind.value, dv.locates.value) == ("VERIFIED", "gpu")


def test_gpu_round_json_is_parsed_strictly() -> None:
    # The body's record is GpuRoundRecord's strict JSON form: an unknown field is refused.
    fleet = Fleet.__new__(Fleet)
    rec, _ = gpu_round(fleet, "fra1", 0.5, key=seeded_key("landmark-fra1"), device_id="0" * 32)
    with pytest.raises(ValueError, match="unknown"):
        GpuRoundRecord.from_json_dict(rec.to_json_dict() | {"extra": 1})


def test_a_landmark_relabelling_a_gpu_round_for_another_device_is_refused(fleet: Fleet) -> None:
    # A lying landmark signs a record naming our device around a report the GPU signed for
    # another device's challenge: the report's nonce is not gpu_nonce of this record.
    rec, ev = gpu_round(fleet, "fra1", 0.5, device_id=uuid.uuid4().hex)
    relabelled = dataclasses.replace(rec, device_id=fleet.device_id, landmark_signature=b"")
    forged = relabelled.signed_by(fleet.landmark_keys["fra1"])
    (out,) = fleet.service.ingest_gpu([(forged, ev)], ADMIN)
    assert out.reason is RejectReason.BAD_EVIDENCE and "nonce" in out.detail, out


def test_a_flagged_landmarks_gpu_rounds_do_not_count(fleet: Fleet) -> None:
    with fleet.service.write() as s:
        set_landmark_status(s, "fra1", "flagged", "test", ADMIN, time.time_ns())
    (out,) = fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
    assert out.reason is RejectReason.FLAGGED_LANDMARK


def test_gpu_rounds_alone_give_a_fresh_gpu_verdict(fleet: Fleet) -> None:
    before = time.time_ns()
    fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    row = _latest(fleet)
    assert (row.kind, row.locates, row.key_kind, row.gpu_kind) == (
        "VERIFIED",
        "gpu",
        None,
        "VERIFIED",
    )
    assert row.as_of_ns >= before and row.inputs == []  # dated by the GPU round, not 1970
    # Its landmark re-keyed (a compromised key replaced): the round no longer counts, and the
    # device, measured by that landmark only through GPU rounds, is decided again at once.
    from lightfence.verifier.clock import now_ns
    from lightfence.verifier.registry import LandmarkSpec, put_landmark
    from verifier_support import LANDMARKS

    lat, lon = LANDMARKS["fra1"]
    new_key = seeded_key("fra1-replacement").public_bytes.hex()
    with fleet.service.write() as s:
        put_landmark(s, LandmarkSpec("fra1", lat, lon, new_key, "lf-net"), ADMIN, now_ns())
    fleet.service.recompute_all()
    assert _latest(fleet).kind != "VERIFIED"


def test_bad_gpu_settings_stop_the_service_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    with pytest.raises(ValueError, match="GPU settings"):
        Service(VerifierConfig(db_url=url, gpu_root_file=str(tmp_path / "missing.pem")))
    with pytest.raises(ValueError, match="gpu_calibration_keys"):
        VerifierConfig(db_url=url, gpu_calibration_file=str(tmp_path / "c.json"))


def test_gpu_rounds_url_is_the_records_sibling() -> None:
    assert gpu_rounds_url("http://v:8000/records") == "http://v:8000/gpu-rounds"
    assert gpu_rounds_url("https://v/api/records/") == "https://v/api/gpu-rounds"
    with pytest.raises(ValueError, match="/records"):
        gpu_rounds_url("http://v:8000/other")


def test_a_gpu_verdict_is_dated_by_its_gpu_rounds_not_by_fresher_key_records(
    fleet: Fleet,
) -> None:
    # GPU rounds 20 h old beside fresh key records: the gpu verdict's time is the GPU round's,
    # so a gate token for it is downgraded as any old VERIFIED is.
    old_ns = time.time_ns() - 20 * 3600 * 10**9
    fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5, at_ns=old_ns)], ADMIN)
    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    row = _latest(fleet)
    assert (row.locates, row.as_of_ns) == ("gpu", old_ns)


def test_serve_refuses_a_bad_gpu_root_with_one_error_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lightfence.cli import main as _register  # noqa: F401  (registers every command)
    from lightfence.cli.app import app

    args = ["serve", "--db", f"sqlite:///{tmp_path}/v.db", "--gpu-root", str(tmp_path / "no.pem")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "error: GPU settings" in result.output, result.output


def test_an_appraisal_made_with_another_landmark_key_is_not_trusted(fleet: Fleet) -> None:
    # A pre-lock appraisal counts only if made with the landmark key read under the lock: here
    # one claims a valid appraisal, made with some other key, for a round whose report is not
    # the one the landmark timed. The round is appraised again and refused.
    good, good_ev = gpu_round(fleet, "ams1", 3.0)
    rec, ev = gpu_round(fleet, "ams1", 3.0)
    bad = (rec, GpuEvidence(good_ev.report, ev.chain_der))
    stale = {0: pre_appraise_one(good, good_ev, seeded_key("old-ams1").public_bytes)}
    with fleet.service.write() as s:
        ingestor = GpuIngestor(s, fleet.service.config, ADMIN, time.time_ns())
        (out,) = ingestor.ingest_gpu([bad], fleet.service.gpu, stale)
    assert out.reason is RejectReason.BAD_EVIDENCE, out
    # And with the right key, the pre-lock appraisal is used as it is.
    with fleet.service.read() as s:
        pre = pre_appraise(s, [(good, good_ev)], fleet.service.gpu, time.time_ns())
    assert pre[0].appraisal is not None and pre[0].error is None
    assert [o.status for o in fleet.service.ingest_gpu([(good, good_ev)], ADMIN)] == ["stored"]


def pre_appraise_one(rec: GpuRoundRecord, ev: GpuEvidence, key: bytes) -> PreAppraised:
    appraisal = verify_gpu_round(rec, ev, rec_key(rec), AppraisalPolicy((ROOT.cert,)), time.time())
    return PreAppraised(key, appraisal, None)


def rec_key(rec: GpuRoundRecord) -> bytes:
    return seeded_key("landmark-" + rec.landmark_id).public_bytes


def test_one_gpu_is_enrolled_for_one_device_only(fleet: Fleet) -> None:
    other = identity_for(seeded_key("second-device"))
    lic = Licence(policy="in:DE", declared_country="DE", gpu_id=gpu_id_of(GPU))
    with (
        pytest.raises(BadInput, match="already enrolled for another device"),
        fleet.service.write() as s,
    ):
        enrol_device(s, other, lic, "acme", ADMIN, time.time_ns())
    with fleet.service.write() as s:  # without the GPU it enrols; then the licence is refused
        enrol_device(s, other, replace_gpu(lic, None), "acme", ADMIN, time.time_ns())
    with pytest.raises(BadInput, match="one GPU locates one device"), fleet.service.write() as s:
        set_licence(s, other.device_id, lic, ADMIN, time.time_ns())


def replace_gpu(lic: Licence, gpu_id: str | None) -> Licence:
    return dataclasses.replace(lic, gpu_id=gpu_id)


PLACES = {
    "frankfurt": (50.11, 8.68),
    "berlin": (52.52, 13.40),
    "munich": (48.14, 11.58),
    "paris": (48.86, 2.35),
    "warsaw": (52.23, 21.01),
}


def _rtts(place: str, slack: float) -> list[float]:
    """RTTs from a place to each test landmark (sorted by id): light's minimum times `slack`."""
    lat, lon = PLACES[place]
    return [
        2 * float(great_circle_km(lat, lon, *LANDMARKS[lid])) / C_VACUUM_KM_PER_MS * slack + 0.3
        for lid in sorted(LANDMARKS)
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key_at=st.sampled_from(sorted(PLACES)),
    gpu_at=st.sampled_from(sorted(PLACES)),
    key_slack=st.floats(1.0, 2.5),
    gpu_slack=st.floats(1.0, 2.5),
    n_gpu=st.integers(1, 4),
)
def test_service_and_offline_verify_give_the_same_device_verdict(
    service_fleet: Fleet, key_at: str, gpu_at: str, key_slack: float, gpu_slack: float, n_gpu: int
) -> None:
    """Key and GPU anywhere: the service's verdict (kind, locates, mismatch) is what `lightfence
    verify` computes from the evidence bundle the service hands out (one rule, not a copy)."""
    key_rtts, gpu_rtts = _rtts(key_at, key_slack), _rtts(gpu_at, gpu_slack)
    fleet = service_fleet
    fleet.device_key = SigningKey.generate()
    gpu = GpuStandIn(ROOT, signing_time=FAST)
    lic = Licence(policy="in:DE", declared_country="DE", gpu_id=gpu_id_of(gpu))
    with fleet.service.write() as s:
        enrol_device(s, fleet.identity, lic, "acme", ADMIN, time.time_ns())
    lids = sorted(fleet.landmark_keys)
    fleet.service.ingest(
        [fleet.record(lid, rtt) for lid, rtt in zip(lids, key_rtts, strict=True)], ADMIN
    )
    rounds = [
        gpu_round(fleet, lid, rtt, gpu=gpu)
        for lid, rtt in zip(lids[:n_gpu], gpu_rtts[:n_gpu], strict=True)
    ]
    assert {o.status for o in fleet.service.ingest_gpu(rounds, ADMIN)} == {"stored"}
    fleet.service.recompute_all()
    row = _latest(fleet)
    with fleet.service.read() as s:
        doc = device_bundle(s, fleet.device_id, ADMIN, time.time_ns())
    bundle = EvidenceBundle.from_json_dict(doc)
    check = check_bundle(
        bundle,
        {e.id: e for e in bundle.landmarks},
        now_unix_ns=time.time_ns(),
        gpu_policy=AppraisalPolicy((ROOT.cert,)),
        calibration=fleet.service.gpu.calibration,
        enrolled_gpu_id=lic.gpu_id,
    )
    dv = device_verdict(check, "in:DE", claimed="DE")
    assert (row.kind, row.locates, row.alert) == (
        dv.kind.value,
        dv.locates.value,
        "key-gpu-mismatch" if dv.mismatch else None,
    )


@pytest.fixture(scope="module")
def service_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("prop")
    f = gpu_fleet(f"sqlite:///{tmp}/v.db", tmp)
    yield f
    f.service.close()


def test_a_gpu_round_is_a_check_in(fleet: Fleet) -> None:
    at = time.time_ns() - 10**9
    fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5, at_ns=at)], ADMIN)
    with fleet.service.read() as s:
        dev = s.get(DeviceRow, fleet.device_id)
        assert dev is not None and dev.last_record_ns == at
