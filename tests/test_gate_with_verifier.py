"""The gate against the real verifier service on a loopback socket: signed tokens end to end."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

import lightfence.cli  # noqa: F401  (registers every command)
from lightfence.cli.app import app
from lightfence.gate.client import GateState, VerifierClient, check_device
from lightfence.gate.decision import Answer, GateMode, GatePolicy
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.service import Service
from verifier_support import Fleet, make_fleet, token


@pytest.fixture
def verifier(tmp_path: Path) -> Iterator[tuple[str, Fleet, Service]]:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    fleet = make_fleet(db)
    fleet.service.close()
    config = VerifierConfig(db_url=db, signing_key_path=str(tmp_path / "verifier.key"))
    app = create_app(config, worker=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", fleet, app.state.service
    server.should_exit = True
    thread.join(10)


def test_gate_allows_a_verified_device_and_denies_without_a_verdict(
    verifier: tuple[str, Fleet, Service], tmp_path: Path
) -> None:
    import httpx

    url, fleet, service = verifier
    admin = token(service, "admin", Role.ADMIN)
    acme = token(service, "acme-ops", Role.OPERATOR, "acme")
    key = httpx.get(f"{url}/verifier/key").json()
    public = bytes.fromhex(key["public_key"])
    policy = GatePolicy(mode=GateMode.FAIL_CLOSED)
    state = GateState(tmp_path / "gate")
    device = fleet.device_id

    with VerifierClient(url, api_token=acme) as client:
        before = check_device(
            device,
            lambda: client.fetch(device),
            verifier_public_keys=[public],
            policy=policy,
            state=state,
        )
    assert before.answer is Answer.DENIED  # no verdict yet: fail-closed

    records = [fleet.record("fra1", 0.5), fleet.record("par1", 5.0)]
    body = {"records": [r.to_json_dict() for r in records]}
    hdr = {"authorization": f"Bearer {admin}"}
    assert httpx.post(f"{url}/records", json=body, headers=hdr).status_code == 200
    assert httpx.post(f"{url}/verdicts/recompute", headers=hdr).status_code == 200

    with VerifierClient(url, api_token=acme) as client:
        after = check_device(
            device,
            lambda: client.fetch(device),
            verifier_public_keys=[public],
            policy=policy,
            state=state,
        )
    assert after.answer is Answer.ALLOWED, after
    # The token states its policy whole; the gate compares it as a structure (issue 18: a gate
    # asking for `in:DE` used to deny a token reading `in:DE (bound: vacuum)`).
    assert after.token is not None
    assert after.token.policy == "in:DE (bound: vacuum, liars: 0)"
    key_json = tmp_path / "verifier-key.json"
    key_json.write_text(httpx.get(f"{url}/verifier/key").text)  # pinned as served
    for args, answer, detail in (
        (["--policy", "in:DE"], "allowed", ""),
        (["--policy", " IN: de ", "--bound", "fibre"], "allowed", ""),
        (["--policy", "in:DE (bound: vacuum, liars: 0)"], "allowed", ""),
        (["--policy", "in:DE,FR"], "allowed", ""),  # inside DE is inside DE or FR
        (["--policy", "in:DE", "--liars", "1"], "denied", "tolerates 0 lying landmarks"),
        (["--policy", "in:FR"], "denied", "token region is in:DE, the operator requires in:FR"),
        (["--policy", "in:DE", "--require", "gpu"], "denied", "locates the key"),
    ):
        result = CliRunner().invoke(
            app,
            ["gate", "check", "--device", device, "--verifier", url, "--verifier-key",
             str(key_json), "--state-dir", str(tmp_path / "cli"), *args],
            env={"LIGHTFENCE_VERIFIER_TOKEN": acme},
        )  # fmt: skip
        out = json.loads(result.output)
        assert out["answer"] == answer, (args, out)
        assert detail in out["detail"]

    # Another operator's token cannot fetch this device's token; the gate then denies.
    other = token(service, "other-ops", Role.OPERATOR, "globex")
    r = httpx.get(f"{url}/devices/{device}/token", headers={"authorization": f"Bearer {other}"})
    assert r.status_code in (403, 404)


def test_token_endpoint_without_a_key_says_how_to_add_one(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    db = f"sqlite:///{tmp_path / 'v.db'}"
    app = create_app(VerifierConfig(db_url=db), worker=False)
    with TestClient(app) as client:
        r = client.get("/verifier/key")
    assert r.status_code == 503
    assert "--signing-key" in r.json()["detail"]
