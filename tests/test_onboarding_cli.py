"""Onboarding from the command line against a real verifier on a loopback socket (issue 18):
landmark register/list/retire, device enrol/list/retire, remote status, audit and tokens, and
one clear `error:` line for each failure a new user can hit."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lightfence.cli.remote import TOKEN_ENV, VERIFIER_ENV
from lightfence.crypto.keys import SigningKey
from lightfence.model.signed_registry import verify_registry
from lightfence.verifier.auth import Role
from onboarding_support import (
    LiveVerifier,
    assert_one_error_line,
    cli,
    free_tcp_port,
    live_verifier,
    token_file,
)
from verifier_support import token


@pytest.fixture
def verifier(tmp_path: Path) -> Iterator[LiveVerifier]:
    with live_verifier(tmp_path) as v:
        yield v


def init_landmark(tmp_path: Path, lid: str, listen: str, operator: str = "acme-ixp") -> Path:
    """`landmark init`'s stdout saved to a file, as an operator would."""
    result = cli(
        "landmark", "init", "--id", lid, "--lat", "50.11", "--lon", "8.68",
        "--listen", listen, "--operator", operator, "--dir", str(tmp_path / lid),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    entry = tmp_path / f"{lid}.json"
    entry.write_text(result.stdout)
    return entry


def test_landmark_init_output_registers_as_it_is(verifier: LiveVerifier, tmp_path: Path) -> None:
    entry = init_landmark(tmp_path, "fra1", "127.0.0.1:17990")
    remote = ["--verifier", verifier.url, "--token-file", token_file(verifier.admin)]
    made = cli("landmark", "register", str(entry), *remote)
    assert made.exit_code == 0, made.output
    assert "registered landmark fra1" in made.stdout and "127.0.0.1:17990" in made.stdout
    # From standard input too, and again: an update, not an error.
    again = cli("landmark", "register", "-", *remote, stdin=entry.read_text())
    assert again.exit_code == 0, again.output

    listed = cli("landmark", "list", "--json", *remote)
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["address"], row["status"]) == ("fra1", "127.0.0.1:17990", "active")

    # The registry agents fetch: signed by the key GET /verifier/key serves, with the address.
    key = bytes.fromhex(httpx.get(f"{verifier.url}/verifier/key").json()["public_key"])
    doc = httpx.get(f"{verifier.url}/landmarks/registry.signed.json").json()
    entries = verify_registry(doc, key, time.time_ns())
    assert entries["fra1"].address == "127.0.0.1:17990"
    assert entries["fra1"].public_key.hex() == json.loads(entry.read_text())["public_key"]

    retired = cli("landmark", "retire", "fra1", "--reason", "moved", *remote)
    assert retired.exit_code == 0 and "retired" in retired.stdout
    doc = httpx.get(f"{verifier.url}/landmarks/registry.signed.json").json()
    assert verify_registry(doc, key, time.time_ns()) == {}


def test_register_refuses_a_listen_on_all_address_unless_given_one(
    verifier: LiveVerifier, tmp_path: Path
) -> None:
    entry = init_landmark(tmp_path, "fra2", "0.0.0.0:7800", operator="")
    remote = ["--verifier", verifier.url, "--token-file", token_file(verifier.admin)]
    bad = cli("landmark", "register", str(entry), *remote)
    assert_one_error_line(bad, contains="--address", code=2)
    bad = cli("landmark", "register", str(entry), "--address", "192.0.2.7:7800", *remote)
    assert_one_error_line(bad, contains="--operator", code=2)
    ok = cli(
        "landmark", "register", str(entry), "--address", "192.0.2.7:7800", "--operator", "x",
        *remote,
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    # The API refuses such an address itself, and both spellings of one coordinate.
    body = json.loads(entry.read_text()) | {"operator": "x", "id": "fra3"}
    hdr = {"authorization": f"Bearer {verifier.admin}"}
    r = httpx.post(f"{verifier.url}/landmarks", json=body, headers=hdr)
    assert r.status_code == 422 and "listen-on-all" in r.json()["detail"]
    r = httpx.post(
        f"{verifier.url}/landmarks",
        json=body | {"address": "192.0.2.8:7800", "lat": 1.0},
        headers=hdr,
    )
    assert r.status_code == 422 and "not both" in r.text


def test_device_enrol_list_retire(verifier: LiveVerifier, tmp_path: Path) -> None:
    ident = cli("agent", "keygen", "--key", str(tmp_path / "dev.key"))
    identity = tmp_path / "identity.json"
    identity.write_text(ident.stdout)
    device_id = json.loads(ident.stdout)["device_id"]
    ops = token(verifier.service, "ops", Role.OPERATOR, "acme")
    env = {VERIFIER_ENV: verifier.url, TOKEN_ENV: ops}

    made = cli("device", "enrol", str(identity), "--policy", "in:DE", "--country", "DE", env=env)
    assert made.exit_code == 0, made.output
    assert f"enrolled device {device_id} (operator acme" in made.stdout
    listed = cli("device", "list", env=env)
    assert listed.stdout.startswith(f"{device_id}\tacme\tsoftware\tin:DE\tnone\tactive")

    # An admin must name the operator; an operator may not retire.
    admin_env = {VERIFIER_ENV: verifier.url, TOKEN_ENV: verifier.admin}
    assert_one_error_line(
        cli("device", "enrol", str(identity), "--policy", "in:DE", env=admin_env),
        contains="--operator NAME",
    )
    assert_one_error_line(cli("device", "retire", device_id, env=env), contains="403")
    gone = cli("device", "retire", device_id, "--reason", "decommissioned", env=admin_env)
    assert gone.exit_code == 0 and "retired device" in gone.stdout
    assert "\tretired " in cli("device", "list", env=env).stdout
    assert_one_error_line(
        cli("device", "enrol", str(identity), "--policy", "in:DE", env=env),
        contains="stays retired",
    )
    r = httpx.get(
        f"{verifier.url}/devices/{device_id}/token", headers={"authorization": f"Bearer {ops}"}
    )
    assert r.status_code == 404 and "retired" in r.text
    assert_one_error_line(
        cli("device", "enrol", str(tmp_path / "nope.json"), "--policy", "in:DE", env=env),
        contains="not found",
        code=2,
    )


def test_remote_status_audit_and_tokens(verifier: LiveVerifier) -> None:
    env = {VERIFIER_ENV: verifier.url, TOKEN_ENV: verifier.admin}
    made = cli("token", "create", "ops", "--role", "operator", "--owner", "acme", env=env)
    assert made.exit_code == 0 and made.stdout.startswith("lft_"), made.output
    ops = made.stdout.strip()
    assert_one_error_line(
        cli("token", "create", "ops", "--role", "operator", "--owner", "acme", env=env),
        contains="exists",
    )
    assert_one_error_line(
        cli("token", "create", "x", "--role", "operator", env=env), contains="--owner"
    )
    assert "ops\toperator\tacme\tactive" in cli("token", "list", env=env).stdout
    assert_one_error_line(
        cli("token", "list", env={VERIFIER_ENV: verifier.url, TOKEN_ENV: ops}),
        contains="role admin",
    )
    status = cli("status", env=env)
    assert status.exit_code == 0 and "audit log" in status.stdout, status.output
    assert json.loads(cli("status", "--json", env=env).stdout)["landmarks"] == {}
    audit = cli("audit", "verify", env=env)
    assert audit.exit_code == 0 and "intact" in audit.stdout
    assert cli("token", "revoke", "ops", env=env).exit_code == 0
    assert_one_error_line(cli("token", "revoke", "ops", env=env), contains="already revoked")
    assert_one_error_line(
        cli("status", env={VERIFIER_ENV: verifier.url, TOKEN_ENV: ops}), contains="401"
    )


def _closed_port() -> int:
    return free_tcp_port()  # bound, then released: nothing listens there


@pytest.mark.parametrize(
    ("args", "contains", "code"),
    [
        (
            ["status", "--verifier", "ftp://127.0.0.1:8080", "--token-file", token_file("t")],
            "http://",
            1,
        ),
        (
            ["status", "--verifier", "http://127.0.0.1:notaport", "--token-file", token_file("t")],
            "valid URL",
            1,
        ),
        (
            [
                "landmark",
                "list",
                "--verifier",
                "http://nosuchhost.invalid:8080",
                "--token-file",
                token_file("t"),
            ],
            "cannot resolve",
            1,
        ),
        (["token", "list", "--token-file", token_file("t")], "--verifier URL", 1),
    ],
)
def test_wrong_url_is_one_line(args: list[str], contains: str, code: int) -> None:
    assert_one_error_line(cli(*args, env={VERIFIER_ENV: "", TOKEN_ENV: ""}), contains=contains,
                          code=code)  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["audit", "verify"],
        ["token", "list"],
        ["landmark", "list"],
        ["device", "list"],
        ["device", "retire", "00" * 16],
    ],
)
def test_verifier_down_is_one_line(args: list[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = cli(*args, "--verifier", url, "--token-file", token_file("t"))
    assert_one_error_line(result, contains="connection refused")


def test_wrong_token_and_unregistered_landmark(verifier: LiveVerifier) -> None:
    remote = ["--verifier", verifier.url]
    for args in (["status"], ["landmark", "list"], ["device", "list"], ["token", "list"]):
        assert_one_error_line(
            cli(*args, *remote, "--token-file", token_file("lft_wrong")), contains="401"
        )
    assert_one_error_line(cli("status", *remote), contains="--token-file", code=1)
    assert_one_error_line(
        cli("landmark", "retire", "nosuch", *remote, "--token-file", token_file(verifier.admin)),
        contains="no landmark 'nosuch'",
    )


def test_a_silent_verifier_times_out_in_one_line() -> None:
    # Something listening that never answers: the timeout, not a hang or a traceback.
    from lightfence.cli.remote import Remote, RemoteError

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with (
            pytest.raises(RemoteError, match=r"did not answer within 0\.3 s"),
            Remote(url, "t", timeout_s=0.3) as remote,
        ):
            remote.get("/status")


def test_verifier_key_forms(verifier: LiveVerifier, tmp_path: Path) -> None:
    from lightfence.crypto.keyfile import read_verifier_key

    served = httpx.get(f"{verifier.url}/verifier/key")
    key = bytes.fromhex(served.json()["public_key"])
    as_json = tmp_path / "verifier-key.json"
    as_json.write_text(served.text)
    as_hex = tmp_path / "verifier-key.hex"
    as_hex.write_text(key.hex() + "\n")
    assert read_verifier_key(key.hex()) == read_verifier_key(str(as_json)) == key
    assert read_verifier_key(str(as_hex)) == key
    other = SigningKey.generate().public_bytes.hex()
    as_json.write_text(json.dumps({"public_key": key.hex(), "key_id": other[:32]}))
    with pytest.raises(ValueError, match="does not belong"):
        read_verifier_key(str(as_json))
    with pytest.raises(ValueError, match="neither 64 hex digits nor an existing file"):
        read_verifier_key(str(tmp_path / "missing"))
    secret = tmp_path / "not-a-key"
    secret.write_text("password=hunter2\n")
    with pytest.raises(ValueError, match="neither 64 hex digits nor the JSON") as caught:
        read_verifier_key(str(secret))
    assert "hunter2" not in str(caught.value)


def test_a_redirect_is_one_line_and_the_token_stays(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    seen: list[str | None] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("authorization"))
            self.send_response(308)
            self.send_header("Location", "https://elsewhere.example/status")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli("status", "--verifier", url, "--token-file", token_file("secret"))
    finally:
        server.shutdown()
        server.server_close()
    assert_one_error_line(result, contains="redirects /status to https://elsewhere.example")
    assert seen == ["Bearer secret"]  # asked once, not followed


def test_the_listen_line_hides_a_database_password() -> None:
    from lightfence.cli.verifier_cmd import http_base, redacted

    shown = redacted("postgresql+psycopg://lf:hunter2@db.example:5432/lightfence")
    assert "hunter2" not in shown and "***" in shown
    assert http_base("::1", 8080) == "http://[::1]:8080"


def test_a_token_in_the_environment_without_a_url_is_refused_not_a_local_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `lightfence status` with only the token's variable set is a remote call missing its URL;
    # it must not create an empty local database in the working directory.
    monkeypatch.chdir(tmp_path)
    result = cli("status", env={TOKEN_ENV: "x" * 40, VERIFIER_ENV: ""})
    assert_one_error_line(result, contains="--verifier")
    assert not list(tmp_path.iterdir())
