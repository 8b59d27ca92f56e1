"""`lightfence landmark serve` with a [gpu] table times GPU-signed rounds; the agent's GPU
runner measures it, and `lightfence verify` re-appraises the result offline.

The GPU is the stand-in (no GPU here), so the landmark's [gpu] root_file is the stand-in's
test root; everything else is the real command, sockets and code."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvicorn
from typer.testing import CliRunner

from lightfence.attestation import AppraisalPolicy, appraise
from lightfence.cli import main as _register  # noqa: F401  (imports every command module)
from lightfence.cli.agent_cmd import measure_gpu_all
from lightfence.cli.app import app
from lightfence.crypto.keys import SigningKey
from lightfence.evidence.bundle import EvidenceBundle, save_bundle
from lightfence.identity.device import software_identity
from lightfence.identity.gpu_signer import GpuReport
from lightfence.model.registry import LandmarkEntry
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot
from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Principal, Role, create_token
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.models import GpuRoundRow
from lightfence.verifier.queries import latest_verdict
from lightfence.verifier.registry import LandmarkSpec, Licence, enrol_device, put_landmark
from test_cli_protocol import FRANKFURT, SERVE, SRC, free_udp_port

runner = CliRunner()


def test_landmark_serves_gpu_rounds_and_verify_rechecks(tmp_path: Path) -> None:
    root = GpuTestRoot.create()
    gpu = GpuStandIn(root)
    d = tmp_path / "lm"
    port, gpu_port = free_udp_port(), free_udp_port()
    result = runner.invoke(app, [
        "landmark", "init", "--id", "fra1", "--lat", str(FRANKFURT[0]), "--lon",
        str(FRANKFURT[1]), "--listen", f"127.0.0.1:{port}", "--dir", str(d),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    (d / "gpu_root.pem").write_bytes(root.pem())
    config = d / "landmark.toml"
    config.write_text(
        config.read_text()
        + f'\n[gpu]\nlisten = "127.0.0.1:{gpu_port}"\nroot_file = "gpu_root.pem"\n'
    )
    result = runner.invoke(app, ["landmark", "entry", "--config", str(config)])
    entry = LandmarkEntry.from_json_dict(json.loads(result.output))
    assert entry.gpu_address == f"127.0.0.1:{gpu_port}"
    proc = subprocess.Popen(
        [*SERVE, "--config", str(config)],
        env={**os.environ, "PYTHONPATH": SRC},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "serving on" in proc.stderr.readline()
        lines = [proc.stderr.readline() for _ in range(2)]
        assert any(line.startswith("GPU rounds on") for line in lines), lines
        key = SigningKey.generate()
        ident = software_identity(key)

        def signer(nonce: bytes) -> GpuReport:
            time.sleep(0.002)
            return GpuReport(gpu.report(nonce), gpu.chain_der)

        (res,) = measure_gpu_all([entry], ident, signer)
        assert res.record is not None and res.evidence is not None, res.error
        assert res.record.rtt_ns >= 2_000_000
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "GPU rounds: 1 sessions, 1 records" in err
    bundle = EvidenceBundle(ident, (), (entry,), time.time_ns(), ((res.record, res.evidence),))
    save_bundle(bundle, tmp_path / "b.json")
    (tmp_path / "lm.json").write_text(json.dumps({"landmarks": [entry.to_json_dict()]}))
    args = ["verify", str(tmp_path / "b.json"), "--landmark-keys", str(tmp_path / "lm.json")]
    args += ["--gpu-root", str(d / "gpu_root.pem"), "--policy", "within:50.11,8.68,2000"]
    result = runner.invoke(app, [*args, "--json", "--require", "gpu"])
    out = json.loads(result.output)
    assert len(out["gpu_accepted"]) == 1 and not out["gpu_rejected"], out
    assert out["device_verdict"]["locates"] == "gpu"
    assert out["device_verdict"]["verdict"] == "VERIFIED" and result.exit_code == 0
    assert sys.executable  # the landmark ran under this interpreter (SERVE)


def test_landmark_submits_gpu_rounds_to_the_verifier(tmp_path: Path) -> None:
    """`landmark serve` with a [verifier] url posts each GPU round it signs, with the evidence,
    to the sibling /gpu-rounds; the real verifier (in this process, on loopback) checks and
    stores it and decides a `gpu` verdict."""
    root = GpuTestRoot.create()
    gpu = GpuStandIn(root)
    (tmp_path / "root.pem").write_bytes(root.pem())
    vconfig = VerifierConfig(
        db_url=f"sqlite:///{tmp_path}/v.db", gpu_root_file=str(tmp_path / "root.pem")
    )
    application = create_app(vconfig, worker=False)
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=0, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    vport = server.servers[0].sockets[0].getsockname()[1]
    service = application.state.service
    d = tmp_path / "lm"
    port, gpu_port = free_udp_port(), free_udp_port()
    result = runner.invoke(app, [
        "landmark", "init", "--id", "fra1", "--lat", str(FRANKFURT[0]), "--lon",
        str(FRANKFURT[1]), "--listen", f"127.0.0.1:{port}", "--dir", str(d),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    lm_key = SigningKey.load(d / "fra1.key")
    key = SigningKey.generate()
    ident = software_identity(key)
    nonce = bytes(32)
    policy = AppraisalPolicy((root.cert,))
    gpu_id = appraise(gpu.report(nonce), gpu.chain_der, nonce, policy, time.time())
    admin = Principal("test-admin", Role.ADMIN)
    with service.write() as s:
        put_landmark(
            s,
            LandmarkSpec("fra1", *FRANKFURT, lm_key.public_bytes.hex(), "lf"),
            admin,
            now_ns(),
        )
        assert gpu_id.gpu is not None
        lic = Licence("within:50.11,8.68,500", gpu_id=gpu_id.gpu.gpu_id)
        enrol_device(s, ident, lic, "acme", admin, now_ns())
        secret = create_token(s, name="lm", role=Role.LANDMARK, owner="fra1", actor="t", now_ns=1)
    (d / "token").write_text(secret)
    (d / "gpu_root.pem").write_bytes(root.pem())
    config = d / "landmark.toml"
    config.write_text(
        config.read_text()
        + f'\n[verifier]\nurl = "http://127.0.0.1:{vport}/records"\ntoken_file = "token"\n'
        + f'\n[gpu]\nlisten = "127.0.0.1:{gpu_port}"\nroot_file = "gpu_root.pem"\n'
    )
    entry = LandmarkEntry.from_json_dict(
        json.loads(runner.invoke(app, ["landmark", "entry", "--config", str(config)]).output)
    )
    proc = subprocess.Popen(
        [*SERVE, "--config", str(config)],
        env={**os.environ, "PYTHONPATH": SRC},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(3)]
        assert any(f"submitted to http://127.0.0.1:{vport}/gpu-rounds" in x for x in lines), lines

        def signer(n: bytes) -> GpuReport:
            return GpuReport(gpu.report(n), gpu.chain_der)

        (res,) = measure_gpu_all([entry], ident, signer)
        assert res.record is not None, res.error
        deadline = time.monotonic() + 30
        stored: list[GpuRoundRow] = []
        while not stored and time.monotonic() < deadline:
            time.sleep(0.1)
            with service.read() as s:
                stored = list(s.query(GpuRoundRow))
        assert [r.record_hash for r in stored] == [
            hashlib.sha256(res.record.signed_bytes()).hexdigest()
        ]
        service.recompute_all()
        with service.read() as s:
            latest = latest_verdict(s, ident.device_id)
            assert latest is not None and latest.locates == "gpu"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        server.should_exit = True
        thread.join(timeout=10)
    assert proc.returncode == 0, err
