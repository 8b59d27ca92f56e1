"""The dashboard as served by the verifier: static files without a token, the country map with
no ring across the antimeridian, the evidence endpoint behind the API's own permissions."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from fastapi.testclient import TestClient

from lightfence.crypto.keys import SigningKey
from lightfence.dashboard import countries_geojson
from lightfence.identity.device import software_identity
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role, create_token
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig


def _rings(geometry: dict[str, object]) -> list[list[list[float]]]:
    coords = geometry["coordinates"]
    assert isinstance(coords, list)
    polygons = coords if geometry["type"] == "MultiPolygon" else [coords]
    return [ring for polygon in polygons for ring in polygon]


def test_country_outlines_never_cross_the_antimeridian() -> None:
    doc = json.loads(countries_geojson())
    codes = {f["properties"]["code"] for f in doc["features"]}
    assert {"CN", "RU", "FJ", "US", "DE", "SG", "NZ"} <= codes
    for feature in doc["features"]:
        for ring in _rings(feature["geometry"]):
            # A ring crossing the antimeridian would jump ~360 degrees between two vertices;
            # the one long edge allowed runs along a pole (Antarctica's southern edge).
            for (lon_a, lat_a), (lon_b, lat_b) in itertools.pairwise(ring):
                along_pole = abs(lat_a) > 89.9 and abs(lat_b) > 89.9
                assert abs(lon_a - lon_b) < 180 or along_pole, feature["properties"]
            assert all(-180 <= p[0] <= 180 for p in ring)


def test_dashboard_served_and_api_still_guarded(tmp_path: Path) -> None:
    app = create_app(VerifierConfig(db_url=f"sqlite:///{tmp_path}/v.db"), worker=False)
    service = app.state.service
    with service.write() as session:
        admin = create_token(
            session, name="a", role=Role.ADMIN, owner=None, actor="test", now_ns=now_ns()
        )
        other = create_token(
            session, name="o", role=Role.OPERATOR, owner="other", actor="test", now_ns=now_ns()
        )
    with TestClient(app) as client:
        page = client.get("/dashboard/")
        assert page.status_code == 200 and "lightfence" in page.text
        assert client.get("/dashboard").status_code == 200  # redirected to the slash
        for asset in (
            "app.js",
            "api.js",
            "dom.js",
            "map.js",
            "plots.js",
            "verdicts.js",
            "style.css",
        ):
            assert client.get(f"/dashboard/{asset}").status_code == 200
        leaflet = client.get("/dashboard/vendor/leaflet/leaflet.js")
        assert leaflet.status_code == 200 and "Leaflet" in leaflet.text[:400]
        assert client.get("/dashboard/vendor/leaflet/LICENSE").status_code == 200
        assert client.get("/dashboard/countries.geojson").json()["type"] == "FeatureCollection"
        # The page is public; the data is not.
        assert client.get("/devices").status_code == 401
        identity = software_identity(SigningKey.generate())
        enrol = {
            "identity": identity.to_json_dict(),
            "licence": {"policy": "outside:CN,HK,MO", "declared_country": "DE"},
            "operator": "acme",
        }
        auth = {"Authorization": f"Bearer {admin}"}
        assert client.post("/devices", json=enrol, headers=auth).status_code == 201
        url = f"/devices/{identity.device_id}/evidence"
        missing = client.get(url, headers=auth)
        assert missing.status_code == 409 and "no verdict yet" in missing.json()["detail"]
        hidden = client.get(url, headers={"Authorization": f"Bearer {other}"})
        assert hidden.status_code == 404 and "visible" in hidden.json()["detail"]


def test_short_checkin_interval_needs_the_verifier_to_allow_it(tmp_path: Path) -> None:
    identity = software_identity(SigningKey.generate())
    body = {
        "identity": identity.to_json_dict(),
        "licence": {"policy": "outside:CN", "checkin_interval_s": 2},
        "operator": "acme",
    }
    for minimum, status in ((60, 422), (1, 201)):
        config = VerifierConfig(
            db_url=f"sqlite:///{tmp_path}/v{minimum}.db", min_checkin_interval_s=minimum
        )
        app = create_app(config, worker=False)
        with app.state.service.write() as session:
            admin = create_token(
                session, name="a", role=Role.ADMIN, owner=None, actor="t", now_ns=now_ns()
            )
        with TestClient(app) as client:
            reply = client.post("/devices", json=body, headers={"Authorization": f"Bearer {admin}"})
            assert reply.status_code == status, reply.text
