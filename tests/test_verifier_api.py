"""The verifier's HTTP API through FastAPI's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import AuditRow, DeviceRow, RecordRow, RejectionRow
from lightfence.verifier.service import Service
from record_factory import seeded_key
from verifier_support import ADMIN, Fleet, db_url, identity_for, make_fleet, token

__all__ = ["db_url"]


class Api:
    def __init__(self, fleet: Fleet, client: TestClient, service: Service) -> None:
        self.fleet, self.client, self.service = fleet, client, service
        self.admin = token(service, "admin", Role.ADMIN)
        self.auditor = token(service, "auditor", Role.AUDITOR)
        self.acme = token(service, "acme-ops", Role.OPERATOR, "acme")
        self.other_op = token(service, "other-ops", Role.OPERATOR, "globex")
        self.fra1 = token(service, "lm-fra1", Role.LANDMARK, "fra1")

    def h(self, secret: str) -> dict[str, str]:
        return {"authorization": f"Bearer {secret}"}

    def submit(self, secret: str, body: Any) -> Any:
        return self.client.post("/records", json=body, headers=self.h(secret))

    def counts(self) -> tuple[int, ...]:
        with self.service.read() as s:
            return tuple(
                int(s.execute(select(func.count()).select_from(m)).scalar_one())
                for m in (RecordRow, RejectionRow, DeviceRow, AuditRow)
            )


@pytest.fixture
def api(db_url: str, request: pytest.FixtureRequest) -> Iterator[Api]:
    fleet = make_fleet(db_url)
    fleet.service.close()
    config = VerifierConfig(db_url=db_url, max_body_bytes=64_000, max_batch_records=50)
    app = create_app(config, worker=False)
    with TestClient(app) as client:
        yield Api(fleet, client, app.state.service)


def test_writes_need_a_token_and_say_how_to_get_one(api: Api) -> None:
    r = api.client.post("/records", json=api.fleet.record("fra1", 0.5).to_json_dict())
    assert r.status_code == 401 and "lightfence token create" in r.json()["detail"]
    r = api.client.get("/devices", headers=api.h("lft_not-a-token"))
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]


def test_landmark_submits_its_own_records_only(api: Api) -> None:
    r = api.submit(api.fra1, api.fleet.record("fra1", 0.5).to_json_dict())
    assert r.status_code == 201 and r.json()["status"] == "stored"
    before = api.counts()
    r = api.submit(api.fra1, api.fleet.record("par1", 5.0).to_json_dict())
    assert r.status_code == 403 and "only its own records" in r.json()["detail"]
    assert api.counts() == before


def test_landmark_tokens_never_read_the_fleet(api: Api) -> None:
    # Landmarks are third parties' servers: they submit measurements, they do not learn where
    # anyone's GPUs are, whose they are, or under which licence.
    r = api.submit(api.fra1, api.fleet.record("fra1", 0.5).to_json_dict())
    assert r.status_code == 201
    dev = api.fleet.device_id
    paths = [
        "/devices",
        f"/devices/{dev}",
        f"/devices/{dev}/verdicts",
        f"/devices/{dev}/evidence",
        f"/devices/{dev}/records",
        "/alerts",
        "/alerts.csv",
        "/board/devices",
        f"/board/devices/{dev}",
        "/board/alerts",
        "/board/fleet",
        "/board/policy-region?policy=outside:CN,HK,MO",
    ]
    for path in paths:
        r = api.client.get(path, headers=api.h(api.fra1))
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "role" in r.json()["detail"]
        assert dev not in r.text
    for path in paths[:3]:  # the roles that may read still can
        assert api.client.get(path, headers=api.h(api.auditor)).status_code == 200, path


def test_operators_see_and_submit_only_their_devices(api: Api) -> None:
    dev = api.fleet.device_id
    assert api.client.get(f"/devices/{dev}", headers=api.h(api.acme)).status_code == 200
    r = api.client.get(f"/devices/{dev}", headers=api.h(api.other_op))
    assert r.status_code == 404
    assert api.client.get("/devices", headers=api.h(api.other_op)).json() == []
    before = api.counts()
    r = api.submit(api.other_op, api.fleet.record("fra1", 0.5).to_json_dict())
    # 404, never 403: another operator's device is answered as if it did not exist.
    assert r.status_code == 404 and "visible to this token" in r.json()["detail"]
    assert api.counts() == before
    # Enrolling: an operator enrols for itself, never for another operator.
    ident = identity_for(seeded_key("globex-gpu")).to_json_dict()
    body = {"identity": ident, "licence": {"policy": "outside:CN,HK,MO"}, "operator": "acme"}
    r = api.client.post("/devices", json=body, headers=api.h(api.other_op))
    assert r.status_code == 403
    body.pop("operator")
    r = api.client.post("/devices", json=body, headers=api.h(api.other_op))
    assert r.status_code == 201 and r.json()["operator"] == "globex"


def test_auditor_reads_everything_and_writes_nothing(api: Api) -> None:
    assert len(api.client.get("/devices", headers=api.h(api.auditor)).json()) == 1
    before = api.counts()
    r = api.submit(api.auditor, api.fleet.record("fra1", 0.5).to_json_dict())
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    r = api.client.post("/landmarks/fra1/flag", json={"reason": "x"}, headers=api.h(api.auditor))
    assert r.status_code == 403
    assert api.counts() == before


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "JSON"),
        (b'{"records": "x"}', 422, "must be a list"),
        (b'{"records": []}', 422, "empty"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"version": 1}', 422, "missing record fields"),
    ],
)
def test_malformed_bodies_get_a_clear_4xx_and_change_nothing(
    api: Api, body: bytes, status: int, words: str
) -> None:
    before = api.counts()
    r = api.client.post(
        "/records", content=body, headers={**api.h(api.admin), "content-type": "application/json"}
    )
    assert r.status_code == status and words in r.json()["detail"], r.text
    assert "Traceback" not in r.text
    assert api.counts() == before


def test_wrong_types_and_oversized_bodies(api: Api) -> None:
    before = api.counts()
    rec = api.fleet.record("fra1", 0.5).to_json_dict()
    for field, bad in [("rounds_sent", "2"), ("rtt_ns", [1.5]), ("session_id", 7)]:
        r = api.submit(api.admin, {**rec, field.replace("rtt_", "rtts_"): bad})
        assert r.status_code == 422 and field.split("_")[0] in r.json()["detail"], r.text
    # Attack: an empty landmark signature parsed, then crashed ingestion (500 here; the stream
    # worker ended and replayed it forever). It is a malformed record.
    r = api.submit(api.fra1, {**rec, "landmark_signature": ""})
    assert r.status_code == 422 and "landmark_signature" in r.json()["detail"], r.text
    huge = {"records": [rec] * 200}
    r = api.submit(api.admin, huge)
    assert r.status_code == 413 and "at most" in r.json()["detail"]
    r = api.submit(api.admin, {"records": [rec] * 51})
    assert r.status_code in (413, 422)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield b'{"records": ['
        for _ in range(200):
            yield json.dumps(rec).encode() + b","
        yield b"]}"

    r = api.client.post("/records", content=chunks(), headers=api.h(api.admin))
    assert r.status_code == 413
    assert api.counts() == before


def test_forged_signature_is_rejected_and_kept_as_evidence_only(api: Api) -> None:
    rec = api.fleet.record("fra1", 0.5)
    forged = replace(rec, rtts_ns=(100_000, *rec.rtts_ns[1:]))  # faster than measured
    records, rejections, devices, _ = api.counts()
    r = api.submit(api.fra1, forged.to_json_dict())
    assert r.status_code == 422 and r.json()["reason"] == "bad_signature"
    after = api.counts()
    assert after[:3] == (records, rejections + 1, devices)
    r = api.client.get("/rejections", headers=api.h(api.auditor))
    assert r.json()[0]["reason"] == "bad_signature"


def test_batch_then_verdict_history_with_geojson(api: Api) -> None:
    f = api.fleet
    recs = [f.record("fra1", 0.5), f.record("par1", 5.0)]
    body = {"records": [r.to_json_dict() for r in recs + recs[:1]]}
    r = api.submit(api.admin, body)
    assert r.status_code == 200
    assert (r.json()["stored"], r.json()["duplicate"]) == (2, 1)
    assert api.client.post("/verdicts/recompute", headers=api.h(api.admin)).json() == {
        "verdicts": 1
    }
    devices = api.client.get("/devices", headers=api.h(api.acme)).json()
    assert devices[0]["latest_verdict"]["verdict"] == "VERIFIED"
    hist = api.client.get(f"/devices/{f.device_id}/verdicts", headers=api.h(api.acme)).json()
    latest = hist["verdicts"][0]
    assert latest["verdict"] == "VERIFIED" and len(latest["records"]) == 2
    assert latest["feasible_geojson"]["type"]
    recs_out = api.client.get(f"/devices/{f.device_id}/records", headers=api.h(api.acme)).json()
    assert len(recs_out["records"]) == 2


def test_alerts_csv_ack_health_metrics_status(api: Api) -> None:
    f = api.fleet
    api.submit(api.admin, f.record("fra1", 0.5).to_json_dict())
    api.submit(api.admin, f.record("waw1", 0.5).to_json_dict())
    api.client.post("/verdicts/recompute", headers=api.h(api.admin))
    alerts = api.client.get("/alerts?open=true", headers=api.h(api.acme)).json()
    assert [a["kind"] for a in alerts] == ["inconsistent"]
    assert api.client.get("/alerts", headers=api.h(api.other_op)).json() == []
    csv = api.client.get("/alerts.csv", headers=api.h(api.auditor))
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("id,kind,device_id")
    r = api.client.post(f"/alerts/{alerts[0]['id']}/ack", headers=api.h(api.acme))
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "operator:acme-ops"
    assert api.client.get("/alerts?open=true", headers=api.h(api.acme)).json() == []
    health = api.client.get("/landmarks/health", headers=api.h(api.auditor)).json()
    assert {h["id"] for h in health} == {"fra1", "par1", "ams1", "waw1"}
    # Two disjoint caps: the verdict names both, neither alone; scored, nothing flagged.
    by_id = {h["id"]: h for h in health}
    assert by_id["waw1"]["implicated"] == {
        "named": 1, "named_alone": 0, "blame": 0.5, "cleared_at_ns": None
    }  # fmt: skip
    assert by_id["par1"]["implicated"]["named"] == 0
    assert {h["status"] for h in health} == {"active"}
    metrics = api.client.get("/metrics").text
    assert "lightfence_records_stored_total 2.0" in metrics
    # each POST /records batch held the write lock once, for a measurable time
    assert "lightfence_ingest_write_seconds_count" in metrics
    assert "lightfence_ingest_write_seconds_count 0.0" not in metrics
    assert 'lightfence_verdicts_total{kind="INCONSISTENT"} 1.0' in metrics
    status = api.client.get("/status", headers=api.h(api.auditor)).json()
    assert status["latest_verdicts"]["INCONSISTENT"] == 1
    audit = api.client.get("/audit/verify", headers=api.h(api.auditor)).json()
    assert audit["ok"] and audit["entries"] > 5


def test_peer_rtts_flag_a_landmark_through_the_api(api: Api) -> None:
    now = time.time_ns()
    body = {
        "rtts": [
            {"peer_id": p, "rtt_ms": 0.5, "measured_at_unix_ns": now}
            for p in ("par1", "ams1", "waw1")
        ]
    }
    r = api.client.post("/landmarks/fra1/peer-rtts", json=body, headers=api.h(api.fra1))
    assert r.status_code == 200 and r.json()["flagged"] == ["fra1"]
    r = api.client.post("/landmarks/par1/peer-rtts", json=body, headers=api.h(api.fra1))
    assert r.status_code == 403
    r = api.client.post(
        "/landmarks/fra1/clear", json={"reason": "re-surveyed"}, headers=api.h(api.admin)
    )
    assert r.json()["status"] == "active"


def test_validation_errors_name_the_field(api: Api) -> None:
    r = api.client.post(
        "/landmarks",
        json={"id": "x", "lat": "north", "lon": 1, "public_key": "00", "operator": "o"},
        headers=api.h(api.admin),
    )
    assert r.status_code == 422 and "lat" in r.json()["detail"]
    r = api.client.post(
        "/landmarks",
        json={"id": "x", "lat": 95.0, "lon": 1.0, "public_key": "00" * 32, "operator": "o"},
        headers=api.h(api.admin),
    )
    assert r.status_code == 422 and "latitude" in r.json()["detail"]
    ident = identity_for(seeded_key("z")).to_json_dict()
    r = api.client.post(
        "/devices",
        json={"identity": ident, "licence": {"policy": "inside:DE"}},
        headers=api.h(api.acme),
    )
    assert r.status_code == 422 and "unknown policy" in r.json()["detail"]
    assert api.client.get("/nope", headers=api.h(api.admin)).json() == {"detail": "Not Found"}
    assert api.client.get("/openapi.json").json()["info"]["title"] == "lightfence verifier"


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_receives_new_alerts(tmp_path: object) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"sqlite:///{tmp_path}/hook.db"
        fleet = make_fleet(url, webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
        fleet.service.ingest([fleet.record("fra1", 0.5, device_key=seeded_key("nobody"))],
                             ADMIN)  # fmt: skip
        deadline = time.monotonic() + 10
        while not _Hook.received and time.monotonic() < deadline:
            time.sleep(0.05)
        fleet.service.close()
        assert _Hook.received and _Hook.received[0]["alert"]["kind"] == "rejected_evidence"
    finally:
        server.shutdown()


def test_evidence_bundle_verifies_offline_and_refuses_tampering(api: Api, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lightfence.cli.app import app

    f = api.fleet
    dev = f.device_id
    r = api.client.get(f"/devices/{dev}/evidence", headers=api.h(api.acme))
    assert r.status_code == 409 and "no verdict yet" in r.json()["detail"]
    api.submit(api.admin, {"records": [f.record("fra1", 0.5).to_json_dict(),
                                       f.record("par1", 5.0).to_json_dict()]})  # fmt: skip
    api.client.post("/verdicts/recompute", headers=api.h(api.admin))
    assert (
        api.client.get(f"/devices/{dev}/evidence", headers=api.h(api.other_op)).status_code == 404
    )
    bundle = api.client.get(f"/devices/{dev}/evidence", headers=api.h(api.auditor)).json()
    assert bundle["verdict"]["verdict"] == "VERIFIED" and len(bundle["records"]) == 2
    assert bundle["policy"] == {
        "policy": "in:DE",
        "bound": "vacuum",
        "claimed": "DE",
        "liars": "auto",
    }
    registry = api.client.get("/landmarks/registry.json", headers=api.h(api.auditor)).json()
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    bundle_path, registry_path = str(tmp_path / "bundle.json"), str(tmp_path / "registry.json")
    args = ["verify", bundle_path, "--landmark-keys", registry_path,
            "--policy", "in:DE", "--claimed", "DE", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["verdict"]["verdict"] == "VERIFIED"
    # Anyone who edits an RTT (to move the device) breaks the landmark's signature.
    bundle["records"][1]["rtts_ns"] = [1_000, 1_000]
    bundle["records"][1]["min_rtt_ns"] = 1_000
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "does not verify" in json.loads(result.output)["rejected"][0]["reason"]


def test_evidence_bundle_records_liars_and_refuses_an_altered_setting(
    api: Api, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from lightfence.cli.app import app

    f = api.fleet
    # Four landmarks around a device at Frankfurt: 'auto' tolerates one liar (f = 1).
    rtts = {"fra1": 0.5, "par1": 6.0, "ams1": 5.0, "waw1": 9.0}
    api.submit(api.admin, {"records": [f.record(k, v).to_json_dict() for k, v in rtts.items()]})
    api.client.post("/verdicts/recompute", headers=api.h(api.admin))
    bundle = api.client.get(f"/devices/{f.device_id}/evidence", headers=api.h(api.auditor)).json()
    assert bundle["policy"]["liars"] == "auto"
    # f = 1 costs this device its VERIFIED: without Frankfurt's cap the rest reach past DE.
    assert bundle["verdict"]["tolerated_liars"] == 1
    assert bundle["verdict"]["verdict"] == "UNVERIFIED"
    registry = api.client.get("/landmarks/registry.json", headers=api.h(api.auditor)).json()
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    path = tmp_path / "bundle.json"
    args = ["verify", str(path), "--landmark-keys", str(tmp_path / "registry.json"),
            "--policy", "in:DE", "--claimed", "DE", "--json"]  # fmt: skip

    def run(data: dict[str, object], *extra: str) -> tuple[int, str]:
        path.write_text(json.dumps(data))
        result = CliRunner().invoke(app, [*args, *extra])
        return result.exit_code, result.output

    code, out = run(bundle)  # recomputed with the verifier's default setting: the same verdict
    doc = json.loads(out)
    assert code == 1 and doc["liars"] == "auto" and doc["verdict"]["tolerated_liars"] == 1
    assert doc["verdict"]["verdict"] == "UNVERIFIED"
    # The bundle's setting is not signed: one edited to claim f = 0 is shown, never used.
    altered = json.loads(json.dumps(bundle))
    altered["policy"]["liars"] = 0
    code, out = run(altered)
    doc = json.loads(out)
    assert code == 1 and doc["liars"] == "auto" and doc["verdict"]["verdict"] == "UNVERIFIED"
    assert any("unsigned" in n and '"liars": 0' in n for n in doc["notes"])
    # An auditor may choose another f; it is recomputed with it and says so.
    code, out = run(bundle, "--liars", "0")
    assert code == 0, out
    doc = json.loads(out[out.index("{") :])
    assert doc["liars"] == 0 and doc["verdict"]["tolerated_liars"] == 0
    assert doc["verdict"]["verdict"] == "VERIFIED"
