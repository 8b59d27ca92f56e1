"""Issue 17, verifier side: each finding of the red team as a test that reproduces the attack.

Security headers on every response; hostile JSON answered 4xx, never 500; other tenants'
devices answered 404 (never 403/409); one key under many device ids refused with an alert;
junk floods bounded in rows (rejections and alerts aggregated, audit one entry per request);
per-token write budgets answered 429 with Retry-After.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import AlertRow, AuditRow, DeviceRow, RejectionRow
from lightfence.verifier.service import Service
from record_factory import seeded_key
from verifier_support import Fleet, db_url, identity_for, make_fleet, token

__all__ = ["db_url"]

SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class Api:
    def __init__(self, fleet: Fleet, client: TestClient, service: Service) -> None:
        self.fleet, self.client, self.service = fleet, client, service
        self.admin = token(service, "admin", Role.ADMIN)
        self.acme = token(service, "acme-ops", Role.OPERATOR, "acme")
        self.globex = token(service, "globex-ops", Role.OPERATOR, "globex")
        self.fra1 = token(service, "lm-fra1", Role.LANDMARK, "fra1")

    def h(self, secret: str) -> dict[str, str]:
        return {"authorization": f"Bearer {secret}"}

    def count(self, model: Any) -> int:
        with self.service.read() as s:
            return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _api(url: str, **config: Any) -> Iterator[Api]:
    fleet = make_fleet(url)
    fleet.service.close()
    app = create_app(VerifierConfig(db_url=url, **config), worker=False)
    with TestClient(app) as client:
        yield Api(fleet, client, app.state.service)


@pytest.fixture
def api(db_url: str, tmp_path: Any) -> Iterator[Api]:
    yield from _api(db_url, signing_key_path=str(tmp_path / "verifier.key"))


def _enrol_body(key_label: str, **attributes: str) -> dict[str, Any]:
    ident = identity_for(seeded_key(key_label))
    body = ident.to_json_dict()
    if attributes:
        body["attributes"] = {**body["attributes"], **attributes}
        del body["device_id"]
    return {"identity": body, "licence": {"policy": "outside:CN,HK,MO"}}


def test_security_headers_on_api_static_and_error_responses(api: Api) -> None:
    c = api.client
    replies = {
        "dashboard page": c.get("/dashboard/"),
        "dashboard script": c.get("/dashboard/app.js"),
        "leaflet": c.get("/dashboard/vendor/leaflet/leaflet.js"),
        "countries": c.get("/dashboard/countries.geojson"),
        "api 200": c.get("/devices", headers=api.h(api.admin)),
        "api 401": c.get("/devices"),
        "api 404": c.get("/nope"),
        "api 413": c.post("/records", content=b"x" * 2_000_000, headers=api.h(api.admin)),
        "api 422": c.post("/landmarks", json={}, headers=api.h(api.admin)),
        "healthz": c.get("/healthz"),
        "openapi": c.get("/openapi.json"),
    }
    for what, r in replies.items():
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (what, name, r.headers)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, what
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
    docs = c.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    csp = docs.headers["content-security-policy"]
    assert "'sha256-" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


HOSTILE_BODIES = {
    "100k-deep array": _deep(100_000),
    "100k-deep object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "5000-digit integer": b'{"records": [' + b"9" * 5000 + b"]}",
    "deep inside a record field": b'{"landmark_id": ' + _deep(50_000) + b"}",
    "not utf-8": b"\xff\xfe{}",
    "nan": b'{"lat": NaN, "lon": 1, "id": "x", "public_key": "00", "operator": "o"}',
}
JSON_ROUTES = [
    ("POST", "/records"),
    ("POST", "/devices"),
    ("POST", "/landmarks"),
    ("PUT", "/landmarks/fra1"),
    ("POST", "/landmarks/fra1/peer-rtts"),
    ("POST", "/landmarks/fra1/flag"),
    ("PUT", "/devices/00/licence"),
]


def test_hostile_json_is_answered_4xx_never_500(api: Api) -> None:
    for method, path in JSON_ROUTES:
        for what, body in HOSTILE_BODIES.items():
            r = api.client.request(
                method,
                path,
                content=body,
                headers={**api.h(api.admin), "content-type": "application/json"},
            )
            assert 400 <= r.status_code < 500, (method, path, what, r.status_code, r.text[:200])
            assert isinstance(r.json()["detail"], str | list), (method, path, what)
    big = 10**40
    rec = api.fleet.record("fra1", 0.5).to_json_dict()
    for field in ("measured_at_unix_ns", "rounds_sent", "fastest_round"):
        r = api.client.post("/records", json={**rec, field: big}, headers=api.h(api.admin))
        assert r.status_code == 422, (field, r.text)
    for path in (
        f"/alerts/{'9' * 5000}/ack",
        f"/alerts/{2**70}/ack",
        "/alerts/-1/ack",
    ):
        r = api.client.post(path, headers=api.h(api.admin))
        assert r.status_code in (404, 422), (path, r.status_code)
    for query in (f"limit={'9' * 5000}", "limit=1e999", f"limit={2**70}"):
        r = api.client.get(f"/alerts?{query}", headers=api.h(api.admin))
        assert r.status_code == 422, (query, r.status_code)
    too_big = api.client.post("/devices", content=b" " * 2_000_000, headers=api.h(api.admin))
    assert too_big.status_code == 413


def test_other_tenants_devices_answer_404_never_403_or_409(api: Api) -> None:
    dev = api.fleet.device_id  # enrolled for operator acme
    acme, globex = api.h(api.acme), api.h(api.globex)
    missing = "0" * 32
    for path in ("", "/verdicts", "/records", "/evidence", "/token"):
        theirs = api.client.get(f"/devices/{dev}{path}", headers=globex)
        nobody = api.client.get(f"/devices/{missing}{path}", headers=globex)
        assert theirs.status_code == nobody.status_code == 404, path
        assert theirs.json()["detail"].replace(dev, "X") == nobody.json()["detail"].replace(
            missing, "X"
        )
    # Enrolling acme's identity as globex: not 409 "enrolled by another operator".
    body = {"identity": api.fleet.identity.to_json_dict(), "licence": {"policy": "in:DE"}}
    r = api.client.post("/devices", json=body, headers=globex)
    assert r.status_code == 404, r.text
    # Submitting acme's device's record with globex's token: not 403 "another operator".
    r = api.client.post(
        "/records", json=api.fleet.record("fra1", 0.5).to_json_dict(), headers=globex
    )
    assert r.status_code == 404 and "visible" in r.json()["detail"]
    # ...answered exactly as a record of a device nobody enrolled (no rejection to tell apart).
    nobody_rec = {**api.fleet.record("fra1", 0.5).to_json_dict(), "device_id": missing}
    r2 = api.client.post("/records", json=nobody_rec, headers=globex)
    assert r2.status_code == 404
    assert r.json()["detail"].replace(dev, "X") == r2.json()["detail"].replace(missing, "X")
    # An alert about acme's device cannot be acknowledged (or probed) by globex.
    api.client.post(
        "/records",
        json={**api.fleet.record("fra1", 0.5).to_json_dict(), "landmark_signature": "00" * 64},
        headers=acme,
    )
    (alert,) = api.client.get("/alerts", headers=acme).json()
    theirs = api.client.post(f"/alerts/{alert['id']}/ack", headers=globex)
    nobody = api.client.post("/alerts/999999/ack", headers=globex)
    assert theirs.status_code == nobody.status_code == 404
    assert api.client.get("/rejections", headers=globex).json() == []
    assert api.client.get("/alerts", headers=globex).json() == []


def test_one_key_under_many_device_ids_is_refused_with_an_alert(api: Api) -> None:
    first = api.client.post(
        "/devices", json=_enrol_body("shared", host="a"), headers=api.h(api.acme)
    )
    assert first.status_code == 201, first.text
    holder = first.json()["device_id"]
    for i in range(20):
        who = api.acme if i % 2 else api.globex  # the same operator, or another
        r = api.client.post(
            "/devices", json=_enrol_body("shared", host=f"clone-{i}"), headers=api.h(who)
        )
        assert r.status_code == 422 and "already enrolled" in r.json()["detail"], r.text
    with api.service.read() as s:
        kid = seeded_key("shared").key_id
        assert (
            s.execute(
                select(func.count()).select_from(DeviceRow).where(DeviceRow.key_id == kid)
            ).scalar_one()
            == 1
        )
    alerts = api.client.get("/alerts?kind=key_reuse", headers=api.h(api.acme)).json()
    assert len(alerts) == 1 and alerts[0]["device_id"] == holder and alerts[0]["count"] == 20


def _junk(api: Api, n: int, batch: int, *, made_up_landmarks: bool) -> list[dict[str, Any]]:
    """Records that parse but name made-up devices (and, half of them, made-up landmarks):
    what the red team sent."""
    base = api.fleet.record("fra1", 0.5).to_json_dict()
    out = []
    for i in range(n):
        landmark = "fra1" if i % 2 or not made_up_landmarks else f"junk-{batch}-{i}"
        out.append(
            {
                **base,
                "landmark_id": landmark,
                "device_id": uuid.uuid4().hex,
                "session_id": uuid.uuid4().hex,
            }
        )
    return out


def test_junk_flood_grows_tables_by_rows_per_reason_not_per_record(api: Api) -> None:
    before = {m: api.count(m) for m in (RejectionRow, AlertRow, AuditRow)}
    requests, per_request = 6, 50
    for b in range(requests):
        # Any writer token: an admin's may name any landmark, a landmark's only its own.
        who, made_up = (api.admin, True) if b % 2 else (api.fra1, False)
        junk = _junk(api, per_request, b, made_up_landmarks=made_up)
        r = api.client.post("/records", json={"records": junk}, headers=api.h(who))
        assert r.status_code == 200 and r.json()["rejected"] == per_request
    # (admin, unknown_landmark), (admin, fra1, unknown_device), (lm-fra1, fra1, unknown_device)
    assert api.count(RejectionRow) - before[RejectionRow] == 3
    assert api.count(AlertRow) - before[AlertRow] == 1  # one open rejected_evidence, no device
    # One audit entry per request (the rejections it counted) and one for the first alert.
    assert api.count(AuditRow) - before[AuditRow] <= requests + 1
    rows = api.client.get("/rejections", headers=api.h(api.admin)).json()
    assert sum(r["count"] for r in rows) == requests * per_request
    (alert,) = api.client.get("/alerts", headers=api.h(api.admin)).json()
    assert alert["count"] == requests * per_request and alert["device_id"] is None
    # An operator token cannot even get junk stored as rejections: not its devices, 404.
    junk = _junk(api, 5, 99, made_up_landmarks=True)
    r = api.client.post("/records", json={"records": junk}, headers=api.h(api.acme))
    assert r.status_code == 404
    report = api.client.get("/audit/verify", headers=api.h(api.admin)).json()
    assert report["ok"], report


@pytest.fixture
def tight(tmp_path: Any) -> Iterator[Api]:
    yield from _api(
        f"sqlite:///{tmp_path}/tight.db",
        write_requests_per_s=0.01,
        write_requests_burst=4,
        records_per_s=0.01,
        records_burst=30,
        rejections_per_s=0.01,
        rejections_burst=10,
    )


def test_write_budgets_answer_429_with_retry_after(tight: Api) -> None:
    api = tight
    junk = _junk(api, 12, 0, made_up_landmarks=False)
    r = api.client.post("/records", json={"records": junk}, headers=api.h(api.fra1))
    assert r.status_code == 200 and r.json()["rejected"] == 12  # past the quota of 10
    r = api.client.post("/records", json={"records": junk[:1]}, headers=api.h(api.fra1))
    assert r.status_code == 429 and "rejected" in r.json()["detail"]
    assert int(r.headers["retry-after"]) >= 1
    # Another token is unaffected; its records budget (30) runs out first.
    good = [api.fleet.record("fra1", 0.5).to_json_dict() for _ in range(25)]
    r = api.client.post("/records", json={"records": good}, headers=api.h(api.admin))
    assert r.status_code == 200 and r.json()["stored"] == 25
    r = api.client.post("/records", json={"records": good[:10]}, headers=api.h(api.admin))
    assert r.status_code == 429 and "records/s" in r.json()["detail"]
    # Write requests of any kind: the burst of 4 is spent by the two posts above + 2 more.
    for _ in range(2):
        api.client.post("/verdicts/recompute", headers=api.h(api.admin))
    r = api.client.post("/verdicts/recompute", headers=api.h(api.admin))
    assert r.status_code == 429 and "write requests" in r.json()["detail"]
    assert api.client.get("/devices", headers=api.h(api.admin)).status_code == 200  # reads free


def test_default_budgets_let_a_busy_landmark_through(tmp_path: Any) -> None:
    config = VerifierConfig(db_url=f"sqlite:///{tmp_path}/d.db")
    per_minute = 10_000 / 60  # a landmark measuring 10,000 devices a minute
    assert config.records_per_s >= per_minute
    assert config.records_burst >= 10 * config.max_batch_records
