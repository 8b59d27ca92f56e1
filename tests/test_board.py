"""The dashboard's read views (/board/*): one status and plain sentence per device, verdict
changes instead of repeats, alerts grouped by (device, kind) with the device's name, fleet
counts over time, RTTs against the light floor, the policy's region, and visibility."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from lightfence.units import C_VACUUM_KM_PER_MS
from lightfence.verifier import board
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import DeviceRow, VerdictRow
from record_factory import seeded_key
from verifier_support import Fleet, db_url, make_fleet, token

__all__ = ["db_url"]

# A device near Frankfurt, VERIFIED in:DE at these RTTs (two landmarks: no liar tolerated).
HONEST_MS = {"fra1": 0.5, "par1": 5.0}


class Board:
    def __init__(self, fleet: Fleet, client: TestClient) -> None:
        self.fleet, self.client = fleet, client
        service = client.app.state.service  # type: ignore[attr-defined]
        self.admin = token(service, "admin", Role.ADMIN)
        self.other = token(service, "other-ops", Role.OPERATOR, "globex")

    def get(self, path: str, secret: str | None = None) -> Any:
        r = self.client.get(path, headers={"authorization": f"Bearer {secret or self.admin}"})
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers={"authorization": f"Bearer {self.admin}"})

    def measure(self, rtts: dict[str, float]) -> None:
        recs = [self.fleet.record(lid, ms).to_json_dict() for lid, ms in rtts.items()]
        assert self.post("/records", {"records": recs}).status_code == 200
        assert self.post("/verdicts/recompute", None).status_code == 200


@pytest.fixture
def api(db_url: str) -> Iterator[Board]:
    fleet = make_fleet(db_url)
    fleet.service.close()
    app = create_app(VerifierConfig(db_url=db_url), worker=False)
    with TestClient(app) as client:
        yield Board(fleet, client)


def test_sentence_changes_and_rtt_floor(api: Board) -> None:
    for _ in range(3):  # three recomputes of the same verdict: one run
        api.measure(HONEST_MS)
    [row] = api.get("/board/devices")
    assert row["status"] == "VERIFIED" and row["sentence"].startswith("Verified: ")
    assert row["locates"] == "key" and row["last_seen"].endswith("ago")
    detail = api.get(f"/board/devices/{api.fleet.device_id}")
    assert [r["verdict"] for r in detail["runs"]] == ["VERIFIED"]
    assert detail["runs"][0]["count"] >= 3
    est = detail["region"]["properties"]["estimate"]
    assert est is not None and detail["reference"]["what"] == "the region's centre"
    floors = {r["landmark_id"]: r for r in detail["rtt"]["key"]}
    assert set(floors) == set(HONEST_MS)
    for r in floors.values():  # floor = 2 d / c from the reference, never above the RTT here
        assert r["floor_ms"] == pytest.approx(2 * r["distance_km"] / C_VACUUM_KM_PER_MS, abs=1e-3)
    timeline = api.get("/board/fleet")["timeline"]
    assert timeline[-1]["counts"] == {"VERIFIED": 1}
    assert api.get("/board/devices", api.other) == []  # another operator sees nothing
    r = api.client.get(
        f"/board/devices/{api.fleet.device_id}", headers={"authorization": f"Bearer {api.other}"}
    )
    assert r.status_code == 404


def test_unverified_sentence_says_what_would_verify_it(api: Board) -> None:
    # Slow from everywhere: the caps reach beyond Germany.
    api.measure({lid: ms + 12.0 for lid, ms in HONEST_MS.items()})
    [row] = api.get("/board/devices")
    assert row["status"] == "UNVERIFIED"
    assert "needs a landmark within ~" in row["sentence"] and "of fra1" in row["sentence"]
    assert "null" not in row["sentence"]


def test_unverified_sentence_for_a_licensed_site(db_url: str) -> None:
    fleet = make_fleet(db_url, policy="within:50.11,8.68,100", declared=None)
    fleet.service.close()
    app = create_app(VerifierConfig(db_url=db_url), worker=False)
    with TestClient(app) as client:
        api = Board(fleet, client)
        api.measure({"fra1": 3.0, "par1": 8.0})  # 450 km from Frankfurt: past the 100 km disc
        [row] = api.get("/board/devices")
    assert row["status"] == "UNVERIFIED", row
    assert row["sentence"].startswith("Could also be beyond 100 km of (50.1100, 8.6800)"), row


def test_rejected_and_silent_devices_and_grouped_alerts(api: Board) -> None:
    clone_key = seeded_key("clone")
    # A clone answers as the enrolled identity with its own key: every record rejected, one
    # alert group however many landmarks report it.
    for lid in ("fra1", "par1", "ams1", "waw1"):
        rec = api.fleet.record(lid, 1.0, device_key=clone_key, identity=api.fleet.identity)
        api.post("/records", rec.to_json_dict())
    [row] = api.get("/board/devices")
    assert row["status"] == "REJECTED"
    assert "not the enrolled one" in row["sentence"] and "4 records refused" in row["sentence"]
    groups = api.get("/board/alerts")
    ident = [g for g in groups if g["kind"] == "identity_change"]
    assert len(ident) == 1 and ident[0]["count"] >= 4
    assert ident[0]["device_name"] == api.fleet.device_id[:12]  # no host name: the id


def test_runs_collapse_repeats_and_keep_changes() -> None:
    def row(kind: str, t: int) -> VerdictRow:
        return VerdictRow(kind=kind, locates="key", reason=f"r{t}", computed_ns=t * 10**9,
                          inputs=[], policy="in:DE", bound="vacuum")  # fmt: skip

    rows = [row("VERIFIED", 5), row("VERIFIED", 4), row("UNVERIFIED", 3), row("VERIFIED", 1)]
    out = board.runs(rows)
    assert [(r["verdict"], r["count"]) for r in out] == [
        ("VERIFIED", 2), ("UNVERIFIED", 1), ("VERIFIED", 1)
    ]  # fmt: skip
    assert out[0]["since_ns"] == 4 * 10**9 and out[0]["until_ns"] == 5 * 10**9


def test_policy_region_and_bad_policy(api: Board) -> None:
    f = api.get("/board/policy-region?policy=in:DE")  # the fleet's device is licensed in:DE
    assert f["properties"]["shows"] == "allowed" and f["geometry"]["type"] == "MultiPolygon"
    f = api.get("/board/policy-region?policy=in:de&bound=vacuum")  # another spelling of it
    assert f["properties"]["shows"] == "allowed"
    r = api.client.get(
        "/board/policy-region?policy=nowhere:XX", headers={"authorization": f"Bearer {api.admin}"}
    )
    assert r.status_code == 422 and "unknown policy" in r.json()["detail"]


def test_policy_region_only_for_policies_the_token_sees(api: Board) -> None:
    """Attack: any signed-in token asks for regions of arbitrary policy texts. `in+sea:` of a
    dozen countries took over three minutes of CPU for one request, and core.policy's caches
    keep every country set ever built: a CPU and memory sink. Only the policies of devices the
    token sees are drawn; another operator's policy and an unused one answer alike (404)."""
    costly = "in+sea:BA,BS,BZ,FI,KR,LB,LT,MT,SM,SN,TD,TV"
    for secret in (api.admin, api.other):
        r = api.client.get(
            "/board/policy-region",
            params={"policy": costly},
            headers={"authorization": f"Bearer {secret}"},
        )
        assert r.status_code == 404, r.text
    r = api.client.get(  # in:DE is the fleet operator's; globex has no device under it
        "/board/policy-region?policy=in:DE", headers={"authorization": f"Bearer {api.other}"}
    )
    assert r.status_code == 404 and "licensed under" in r.json()["detail"]


def test_ago_and_round() -> None:
    assert board.ago(None, 0) == "never"
    assert board.ago(0, 90 * 10**9) == "1 min ago"
    assert board.ago(0, 3 * 86400 * 10**9) == "3 d ago"
    assert board._round_km(287.0) == 290 and board._round_km(1234.0) == 1200


def test_device_table_past_65535_devices_on_postgresql(api: Board) -> None:
    """Attack (scale): an admin's /board/devices listed open alerts and rejections with one
    bound parameter per visible device; past 65,535 devices PostgreSQL refuses the statement
    (its protocol's limit) and the dashboard's table answered 500. Devices are copied from the
    enrolled one in SQL (fast), ids and keys made unique."""
    service = api.client.app.state.service  # type: ignore[attr-defined]
    with service.write() as s:
        if s.get_bind().dialect.name != "postgresql":
            pytest.skip("the limit is PostgreSQL's")
        cols = [c.name for c in DeviceRow.__table__.columns]
        unique = {"id", "key_id", "public_key"}
        picked = ", ".join(
            f"lpad(to_hex(n), 32, '0') || substr({c}, 33)" if c in unique else c for c in cols
        )
        s.execute(
            text(
                f"INSERT INTO devices ({', '.join(cols)}) SELECT {picked} "
                "FROM devices, generate_series(1, 65600) AS n"
            )
        )
    r = api.client.get("/board/devices", headers={"authorization": f"Bearer {api.admin}"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()) == 65601
