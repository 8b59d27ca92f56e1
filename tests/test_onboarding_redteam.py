"""Issue 18 red team: each attack on onboarding and the remote clients, as a test that
reproduces it (the fix is in the commit that added the test)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lightfence.cli.app import app as cli_app
from lightfence.cli.remote import TOKEN_ENV, VERIFIER_ENV, Remote, RemoteError
from lightfence.core.kinds import VerdictKind
from lightfence.crypto.tls import CA_FILE_ENV
from lightfence.evidence.submit import SubmitError, post_json
from lightfence.gate.client import VerifierClient
from lightfence.gate.decision import SourceStatus
from lightfence.gate.issuer import token_for_latest_verdict
from lightfence.gate.token import parse_token
from lightfence.geo.naturalearth import countries
from lightfence.model.bearer import BadApiToken, bearer_headers
from lightfence.model.policy import MAX_LIARS, parse_policy_spec
from lightfence.model.trust import Locates
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.errors import BadInput
from lightfence.verifier.models import LandmarkRow
from lightfence.verifier.registry import Licence
from onboarding_support import assert_one_error_line, cli, live_verifier
from record_factory import seeded_key
from tls_support import self_signed
from verifier_support import make_fleet, token

SECRET = "lft_s3cretTOKENvalue"


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP/1.1 peer on loopback that answers {} and keeps what it was sent."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                seen.append(conn.recv(65536))
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 2\r\nconnection: close\r\n\r\n{}"
                )

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", seen
    srv.close()


def test_a_token_with_a_trailing_newline_is_sent_stripped(
    echo_server: tuple[str, list[bytes]],
) -> None:
    # An env file or a Kubernetes secret often ends in a newline: it used to make httpx refuse
    # the header with an error quoting the whole token.
    url, seen = echo_server
    with Remote(url, SECRET + "\n") as remote:
        assert remote.get("/devices") == {}
    assert f"Bearer {SECRET}\r\n".encode() in seen[-1]


@pytest.mark.parametrize(
    "bad", [SECRET + "\r\nX-Evil: 1", SECRET[:8] + " " + SECRET[8:], SECRET + "\u00e9"]
)
def test_a_malformed_token_is_refused_without_quoting_it(
    echo_server: tuple[str, list[bytes]], bad: str
) -> None:
    url, seen = echo_server
    with pytest.raises(RemoteError) as err, Remote(url, bad) as remote:
        remote.get("/devices")
    assert SECRET not in str(err.value) and SECRET[:8] not in str(err.value)
    assert "token" in str(err.value)
    assert not seen  # nothing was sent
    with pytest.raises(BadApiToken) as gate_err:
        VerifierClient(url, api_token=bad)  # the gate logs its errors in the decision log
    assert SECRET[:8] not in str(gate_err.value)
    with pytest.raises(SubmitError) as submit_err:
        post_json(url + "/records", {}, bad)
    assert SECRET[:8] not in str(submit_err.value)


def test_bearer_headers_forms() -> None:
    assert bearer_headers(None) == {} == bearer_headers("  \n")
    assert bearer_headers(f" {SECRET}\n") == {"Authorization": f"Bearer {SECRET}"}


# --- landmark registration -------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A verifier (SQLite, signing key) with the test fleet, and an admin's headers."""
    url = f"sqlite:///{tmp_path}/verifier.db"
    make_fleet(url).service.close()
    config = VerifierConfig(db_url=url, signing_key_path=str(tmp_path / "verifier.key"))
    app = create_app(config, worker=False)
    with TestClient(app) as client:
        admin = token(app.state.service, "admin", Role.ADMIN)
        yield client, {"authorization": f"Bearer {admin}"}


def _landmark(lid: str, label: str, **extra: object) -> dict[str, object]:
    key = seeded_key(label).public_bytes.hex()
    return {"id": lid, "lat": 10.0, "lon": 20.0, "public_key": key, "operator": "x", **extra}


@pytest.mark.parametrize(
    "body",
    [
        _landmark("east", "lm-east", lon=200.0),  # the engine takes 0..360, the registry +-180
        _landmark("\u00e9" * 200, "lm-long"),  # 200 characters, 400 UTF-8 bytes
        _landmark("fake\nfra1", "lm-nl"),  # a forged line in `landmark list`
        _landmark("nl-op", "lm-nl-op", operator="x\ny"),
        _landmark("nl-addr", "lm-nl-addr", address="evil\n192.0.2.1:7800"),
    ],
    ids=["lon-200", "id-400-bytes", "id-newline", "operator-newline", "address-newline"],
)
def test_a_landmark_the_registry_cannot_hold_is_refused(
    api: tuple[TestClient, dict[str, str]], body: dict[str, object]
) -> None:
    client, admin = api
    assert client.post("/landmarks", headers=admin, json=body).status_code == 422
    # Agents keep getting their registry (it used to answer 500 for everyone).
    assert client.get("/landmarks/registry.signed.json").status_code == 200
    assert client.get("/landmarks/registry.json", headers=admin).status_code == 200


def test_a_landmark_id_in_the_path_is_held_to_the_same_rules(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, admin = api
    body = _landmark("x", "lm-path")
    del body["id"]
    assert client.put("/landmarks/" + "a" * 400, headers=admin, json=body).status_code == 422
    assert client.get("/landmarks/registry.signed.json").status_code == 200


def test_one_landmark_key_under_a_second_id_is_refused(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    # A pasted key, or a retired (perhaps compromised) landmark's key under a new id: the box
    # holding it could sign records as a landmark elsewhere, and its RTTs be read from there.
    client, admin = api
    fra1 = next(lm for lm in client.get("/landmarks", headers=admin).json() if lm["id"] == "fra1")
    body = {**_landmark("waw9", "unused"), "public_key": fra1["public_key"], "lat": 52.2}
    answer = client.post("/landmarks", headers=admin, json=body)
    assert answer.status_code == 409 and "fra1" in answer.json()["detail"]
    client.post("/landmarks/fra1/retire", headers=admin, json={"reason": "compromised"})
    assert client.post("/landmarks", headers=admin, json=body).status_code == 409
    # Re-keying a landmark to another's key is the same attack, re-surveying with its own is not.
    par1 = next(lm for lm in client.get("/landmarks", headers=admin).json() if lm["id"] == "par1")
    rekey = {k: par1[k] for k in ("lat", "lon", "operator")} | {"public_key": fra1["public_key"]}
    assert client.put("/landmarks/par1", headers=admin, json=rekey).status_code == 409
    resurvey = rekey | {"public_key": par1["public_key"], "lat": par1["lat"] + 0.01}
    assert client.put("/landmarks/par1", headers=admin, json=resurvey).status_code == 200


# --- licences and tokens ---------------------------------------------------------------------


def test_a_licence_no_token_could_carry_is_refused() -> None:
    # outside: with 90 codes was enrolled, then every GET /devices/{id}/token failed (500): the
    # token's policy field holds at most 255 characters.
    codes = sorted(countries())
    with pytest.raises(BadInput, match="too long for a verdict token"):
        Licence(policy="outside:" + ",".join(codes[:74])).validated()
    lic = Licence(policy="outside:" + ",".join(codes[:73])).validated()
    spec = replace(parse_policy_spec(lic.policy), liars=MAX_LIARS)
    text = token_for_latest_verdict("0" * 32, VerdictKind.VERIFIED, spec, seeded_key("v"), 1.7e9)
    assert parse_token(text)[0].policy_spec == replace(spec, locates=Locates.KEY)


# --- TLS -------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(
        tmp_path, x509.IPAddress(ip_address("127.0.0.1")), "lightfence-test-verifier"
    )


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https:// peer on loopback with a self-signed certificate; answers {} to anything."""
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()


def test_https_verifies_by_default_and_a_private_ca_can_be_pinned(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, cert = tls_server
    for name in (CA_FILE_ENV, "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RemoteError, match=f"does not verify.*{CA_FILE_ENV}"), Remote(url) as r:
        r.get("/verifier/key")  # an unknown certificate is never accepted
    # The clients ignore proxy settings (trust_env=False), which also dropped SSL_CERT_FILE:
    # a verifier behind a TLS proxy with a private CA could not be reached at all.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with Remote(url) as r:
        assert r.get("/verifier/key") == {}
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv(CA_FILE_ENV, str(cert))
    with Remote(url, SECRET) as r:
        assert r.get("/verifier/key") == {}
    assert post_json(url + "/records", {}, SECRET) == b"{}"
    with VerifierClient(url, api_token=SECRET) as gate:
        assert gate.fetch("0" * 32).status is not SourceStatus.UNAVAILABLE
    monkeypatch.setenv(CA_FILE_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(RemoteError, match=CA_FILE_ENV), Remote(url) as r:
        r.get("/verifier/key")


def test_the_landmark_submitter_trusts_what_the_other_clients_trust(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asyncio

    from lightfence.crypto.tls import TlsConfigError
    from lightfence.landmark.submitter import RecordSubmitter
    from record_factory import make_signed_record, seeded_key

    url, cert = tls_server
    for name in (CA_FILE_ENV, "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    record = make_signed_record(seeded_key("lm-ca"), seeded_key("dev-ca"))

    async def deliver(sub: RecordSubmitter) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        sub.add(record)
        await asyncio.sleep(0.5)  # one attempt, then stop (a refused one stays pending)
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    unknown = RecordSubmitter(url + "/records", SECRET, linger_s=0.01)
    asyncio.run(deliver(unknown))  # an unknown certificate is never accepted
    assert unknown.counters.records_submitted == 0
    monkeypatch.setenv(CA_FILE_ENV, str(cert))
    pinned = RecordSubmitter(url + "/records", SECRET, linger_s=0.01)
    asyncio.run(deliver(pinned))
    assert pinned.counters.records_submitted == 1
    monkeypatch.setenv(CA_FILE_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(TlsConfigError, match=CA_FILE_ENV):  # said at start, not per batch
        RecordSubmitter(url + "/records", SECRET)


def test_one_address_for_a_registry_of_several_landmarks_is_refused(tmp_path: Path) -> None:
    # `landmark register registry.json --address H:P` gave every landmark in it the same
    # address: agents would measure one host under every landmark's name.
    entries = [
        {
            "id": lid,
            "public_key": seeded_key(lid).public_bytes.hex(),
            "latitude": 50.0,
            "longitude": 8.0,
            "operator": "x",
        }
        for lid in ("a1", "b1")
    ]
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"landmarks": entries}))
    result = CliRunner().invoke(
        cli_app,
        ["landmark", "register", str(path), "--address", "192.0.2.1:7800"],
        env={VERIFIER_ENV: "http://127.0.0.1:9", TOKEN_ENV: SECRET},
    )
    assert result.exit_code != 0 and "holds 2" in result.output


def test_a_bad_landmark_row_stored_earlier_does_not_fail_every_registry(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    # Rows registered before the checks above (a longitude of 200) stay in old databases.
    client, _ = api
    service = client.app.state.service  # type: ignore[attr-defined]
    with service.write() as session:
        session.get(LandmarkRow, "waw1").lon = 200.0
    doc = client.get("/landmarks/registry.signed.json")
    assert doc.status_code == 200
    assert "waw1" not in {lm["id"] for lm in doc.json()["landmarks"]}
    assert "fra1" in {lm["id"] for lm in doc.json()["landmarks"]}


def test_registering_a_taken_id_with_another_key_is_refused(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    # Two hosts both initialised with `--id fra1`: the second `landmark register` silently took
    # the first one's place (new key, new position; the first one's records stopped verifying).
    client, admin = api
    body = _landmark("fra1", "second-host", lat=52.0, lon=13.4)
    answer = client.post("/landmarks", headers=admin, json=body)
    assert answer.status_code == 409 and "--rekey" in answer.json()["detail"]
    fra1 = next(lm for lm in client.get("/landmarks", headers=admin).json() if lm["id"] == "fra1")
    assert fra1["lat"] == 50.11
    # The same key again is an update (a re-survey); a re-key is explicit.
    same = {**body, "public_key": fra1["public_key"]}
    assert client.post("/landmarks", headers=admin, json=same).status_code == 200
    del body["id"]
    assert client.put("/landmarks/fra1", headers=admin, json=body).status_code == 200


def test_landmark_register_rekey_is_explicit(tmp_path: Path) -> None:
    def init(directory: str) -> str:
        made = cli(
            "landmark", "init", "--id", "fra1", "--lat", "50.11", "--lon", "8.68",
            "--listen", "127.0.0.1:17991", "--operator", "x", "--dir", str(tmp_path / directory),
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        return made.stdout

    first, second = init("a"), init("b")
    with live_verifier(tmp_path) as v:
        env = {VERIFIER_ENV: v.url, TOKEN_ENV: v.admin}
        assert cli("landmark", "register", "-", env=env, stdin=first).exit_code == 0
        refused = cli("landmark", "register", "-", env=env, stdin=second)
        assert_one_error_line(refused, contains="--rekey")
        rekeyed = cli("landmark", "register", "-", "--rekey", env=env, stdin=second)
        assert rekeyed.exit_code == 0, rekeyed.output
        (row,) = json.loads(cli("landmark", "list", "--json", env=env).stdout)
        assert row["public_key"] == json.loads(second)["public_key"]
