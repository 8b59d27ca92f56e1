"""`agent measure --verifier URL --verifier-key KEY`: the agent needs only the verifier's URL and
its pinned key. Real landmark processes (UDP), a real verifier (uvicorn, TCP), real signatures;
a tampered, replayed or unsigned registry is refused in one line (issue 18)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from lightfence.crypto.keys import SigningKey
from lightfence.model.registry import LandmarkEntry, RegistryError
from lightfence.model.signed_registry import (
    MAX_REGISTRY_AGE_S,
    sign_registry,
    verify_registry,
)
from lightfence.verifier.auth import Role
from onboarding_support import LiveVerifier, assert_one_error_line, cli, live_verifier, token_file
from test_cli_protocol import FRANKFURT, SERVE, SRC, free_udp_port
from verifier_support import token

NOW_NS = 1_765_000_000_000_000_000


def _entry(lid: str = "fra1", address: str = "192.0.2.1:7800") -> LandmarkEntry:
    return LandmarkEntry(lid, SigningKey.generate().public_bytes, 50.11, 8.68, 0.5, address)


def test_signed_registry_round_trip_and_every_refusal() -> None:
    key = SigningKey.generate()
    doc = sign_registry([_entry()], key, NOW_NS)
    assert verify_registry(doc, key.public_bytes, NOW_NS)["fra1"].address == "192.0.2.1:7800"
    # Through JSON text, as an agent receives it.
    assert verify_registry(json.loads(json.dumps(doc)), key.public_bytes, NOW_NS + 10**9)

    def refused(d: object, match: str, now: int = NOW_NS, pinned: bytes = key.public_bytes) -> None:
        with pytest.raises(RegistryError, match=match):
            verify_registry(d, pinned, now)

    moved = json.loads(json.dumps(doc))
    moved["landmarks"][0]["address"] = "203.0.113.66:7800"  # sent to an attacker's relay
    refused(moved, "altered after signing")
    added = json.loads(json.dumps(doc))
    added["landmarks"].append(_entry("evil1").to_json_dict())
    refused(added, "altered after signing")
    later = dict(doc, issued_at_unix_ns=NOW_NS + 1)
    refused(later, "altered after signing")
    refused({k: v for k, v in doc.items() if k != "signature"}, "not signed")
    refused({"landmarks": doc["landmarks"]}, "not signed")
    refused(doc, "not the pinned verifier key", pinned=SigningKey.generate().public_bytes)
    refused(dict(doc, signature="zz"), "not hex")
    refused(doc, "replayed", now=NOW_NS + int((MAX_REGISTRY_AGE_S + 1) * 1e9))
    refused(doc, "in the future", now=NOW_NS - 10**12)
    refused([], "not a JSON object")
    no_time = sign_registry([_entry()], key, NOW_NS)
    del no_time["issued_at_unix_ns"]
    no_time["signature"] = key.sign(
        b"lightfence/landmark-registry/v1\x00"
        + json.dumps(
            {k: v for k, v in no_time.items() if k != "signature"},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hex()
    refused(no_time, "no issued_at")


@contextmanager
def relay(upstream: str, edit: Any) -> Iterator[str]:
    """A man in the middle: serves the verifier's signed registry after `edit(doc)`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            doc = httpx.get(upstream + self.path).json()
            body = json.dumps(edit(doc)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[LiveVerifier, Path]]:
    """A verifier and two landmark processes in Frankfurt registered on it from their `landmark
    init` output; yields the verifier and the pinned key file (GET /verifier/key saved as is)."""
    procs: list[subprocess.Popen[str]] = []
    env = {**os.environ, "PYTHONPATH": SRC}
    with live_verifier(tmp_path) as verifier:
        try:
            for i, (lat, lon) in enumerate([FRANKFURT, (50.1150, 8.6900)]):
                d = tmp_path / f"lm{i}"
                made = cli(
                    "landmark", "init", "--id", f"lm{i}", "--lat", str(lat), "--lon", str(lon),
                    "--listen", f"127.0.0.1:{free_udp_port()}", "--dir", str(d),
                    "--position-error-km", "1", "--operator", "acme-ixp",
                )  # fmt: skip
                assert made.exit_code == 0, made.output
                reg = cli(
                    "landmark", "register", "-", "--verifier", verifier.url,
                    "--token-file", token_file(verifier.admin), stdin=made.stdout,
                )  # fmt: skip
                assert reg.exit_code == 0, reg.output
                proc = subprocess.Popen(
                    [*SERVE, "--config", str(d / "landmark.toml")],
                    env=env,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                procs.append(proc)
                assert proc.stderr is not None
                assert "serving on" in proc.stderr.readline()
            key_file = tmp_path / "verifier-key.json"
            key_file.write_text(httpx.get(f"{verifier.url}/verifier/key").text)
            yield verifier, key_file
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.communicate(timeout=15)


def test_agent_measures_from_the_verifier_url_and_key_alone(
    site: tuple[LiveVerifier, Path], tmp_path: Path
) -> None:
    verifier, key_file = site
    ops = token(verifier.service, "ops", Role.OPERATOR, "acme")
    device_key = tmp_path / "device.key"
    identity = tmp_path / "identity.json"
    identity.write_text(cli("agent", "keygen", "--key", str(device_key)).stdout)
    measure = [
        "agent", "measure", "--verifier", verifier.url, "--verifier-key", str(key_file),
        "--token-file", token_file(ops), "--key", str(device_key),
        "--rounds", "3", "--timeout", "5",
        "--gpu-rounds", "off", "--out", str(tmp_path / "evidence.json"),
    ]  # fmt: skip

    # Not enrolled yet: an operator's token cannot submit for it.
    assert_one_error_line(cli(*measure), contains="lightfence device enrol")
    # An admin's token can, and every record is rejected: one line, with the reason.
    admin_measure = [*measure]
    admin_measure[admin_measure.index("--token-file") + 1] = token_file(verifier.admin)
    assert_one_error_line(cli(*admin_measure), contains="is not enrolled")

    enrol = cli(
        "device", "enrol", str(identity), "--policy", "in:DE",
        "--verifier", verifier.url, "--token-file", token_file(ops),
    )  # fmt: skip
    assert enrol.exit_code == 0, enrol.output
    # A landmark registered without an address (the old API form) is skipped, and said so.
    old_form = {
        "id": "noaddr1", "lat": 52.52, "lon": 13.40, "operator": "x",
        "public_key": SigningKey.generate().public_bytes.hex(),
    }  # fmt: skip
    hdr = {"authorization": f"Bearer {verifier.admin}"}
    assert httpx.post(f"{verifier.url}/landmarks", json=old_form, headers=hdr).status_code == 201
    ok = cli(*measure)
    assert ok.exit_code == 0, ok.output
    assert "2 stored" in ok.stderr
    assert "warning: landmark noaddr1 is registered without an address" in ok.stderr
    device_id = json.loads(identity.read_text())["device_id"]
    deadline = time.monotonic() + 60  # a busy CI host; the worker decides within a second
    verdict = None
    while time.monotonic() < deadline and verdict is None:
        listed = json.loads(
            cli(
                "device",
                "list",
                "--json",
                "--verifier",
                verifier.url,
                "--token-file",
                token_file(ops),
            ).stdout
        )
        verdict = (listed[0]["latest_verdict"] or {}).get("verdict")
        time.sleep(0.2)
    assert listed[0]["device_id"] == device_id
    assert verdict == "VERIFIED"

    # A landmark the verifier does not list (never registered, or retired) is not measured.
    assert_one_error_line(cli(*measure, "--landmark", "nosuch"), contains="not registered", code=2)

    # A man in the middle rewriting an address (to time a relay of its own) is caught.
    def move(doc: dict[str, Any]) -> dict[str, Any]:
        doc["landmarks"][0]["address"] = "127.0.0.1:9"
        return doc

    with relay(verifier.url, move) as url:
        tampered = [*measure]
        tampered[tampered.index(verifier.url)] = url
        assert_one_error_line(cli(*tampered), contains="altered after signing")

    def strip(doc: dict[str, Any]) -> dict[str, Any]:
        return {"landmarks": doc["landmarks"]}

    with relay(verifier.url, strip) as url:
        unsigned = [*measure]
        unsigned[unsigned.index(verifier.url)] = url
        assert_one_error_line(cli(*unsigned), contains="not signed")

    # The wrong pinned key (another verifier's).
    other = tmp_path / "other.hex"
    other.write_text(SigningKey.generate().public_bytes.hex())
    wrong = [*measure]
    wrong[wrong.index(str(key_file))] = str(other)
    assert_one_error_line(cli(*wrong), contains="not the pinned verifier key")


def test_a_verifier_without_a_signing_key_serves_no_registry(tmp_path: Path) -> None:
    with live_verifier(tmp_path, signing_key=False) as verifier:
        result = cli(
            "agent", "measure", "--verifier", verifier.url,
            "--verifier-key", SigningKey.generate().public_bytes.hex(),
            "--token-file", token_file(verifier.admin), "--key", str(tmp_path / "d.key"),
        )  # fmt: skip
    assert_one_error_line(result, contains="--signing-key")


def test_serve_says_where_it_listens_and_a_busy_port_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    serve = [
        sys.executable, "-m", "lightfence", "serve", "--host", "127.0.0.1", "--port", "0",
        "--db", f"sqlite:///{tmp_path / 'v.db'}", "--signing-key", str(tmp_path / "v.key"),
        "--checkpoints", str(tmp_path / "cp.jsonl"), "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(serve, env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("lightfence verifier listening on http://127.0.0.1:"), line
        base = line.split()[4]
        assert f"(db: sqlite:///{tmp_path / 'v.db'}, dashboard: {base}/)" in line
        port = base.rsplit(":", 1)[1]
        busy = subprocess.run(
            [*serve[:7], port, *serve[8:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert busy.returncode == 1
        assert busy.stderr.strip().splitlines() == [
            f"error: cannot listen on 127.0.0.1:{port}: the port is already in use "
            "(another verifier? choose --port)"
        ]
        assert busy.stdout == ""
        assert not (tmp_path / "v2.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
