"""Node labelling. No Kubernetes cluster exists here: `label_pass` runs against an in-memory fake
of the two API calls, and `HttpKubeAPI` against a loopback HTTP stand-in for those endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lightfence.cli.app import app
from lightfence.crypto.keys import SigningKey
from lightfence.gate.decision import Answer, Decision, GateMode, SourceStatus
from lightfence.gate.kube import (
    ANNOTATION_DEVICE_IDS,
    HARDENED_LABEL,
    LABEL_REASON,
    LABEL_VERIFIED,
    HttpKubeAPI,
    KubeError,
    Node,
    check_label_key,
    label_pass,
    load_device_map,
)

A = "a" * 32
B = "b" * 32
C = "c" * 32
D = "d" * 32


class FakeKube:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.patches: list[tuple[str, dict[str, str]]] = []

    def list_nodes(self) -> list[Node]:
        return list(self.nodes.values())

    def patch_node_labels(self, name: str, labels: Mapping[str, str]) -> None:
        self.patches.append((name, dict(labels)))
        n = self.nodes[name]
        self.nodes[name] = Node(n.name, {**n.labels, **labels}, n.annotations, n.gpu_count)


def gate_with(answers: dict[str, Answer]) -> Any:
    def check(device_id: str) -> Decision:
        ans = answers.get(device_id, Answer.DENIED)
        return Decision(
            device_id=device_id,
            answer=ans,
            reason="verified" if ans is Answer.ALLOWED else "verdict-refuted",
            detail="",
            decided_at_unix_s=0.0,
            mode=GateMode.FAIL_CLOSED,
            grace_s=0.0,
            source="test",
            source_status=SourceStatus.TOKEN,
        )

    return check


def gpu_node(name: str, ids: list[str], gpus: int | None = None) -> Node:
    return Node(
        name, {}, {ANNOTATION_DEVICE_IDS: ",".join(ids)}, len(ids) if gpus is None else gpus
    )


def test_label_pass_sets_true_only_when_every_gpu_is_allowed() -> None:
    kube = FakeKube(
        [
            gpu_node("good", [A]),
            gpu_node("mixed", [C, B]),
            gpu_node("undeclared", [], gpus=4),
            gpu_node("partly-declared", [D], gpus=2),
            Node("cpu-only"),
        ]
    )
    allowed = {A: Answer.ALLOWED, C: Answer.ALLOWED, D: Answer.ALLOWED}
    results = {r.node: r for r in label_pass(kube, gate_with(allowed))}
    assert set(results) == {"good", "mixed", "undeclared", "partly-declared"}
    labels = {n: kube.nodes[n].labels.get(LABEL_VERIFIED) for n in results}
    assert labels == {
        "good": "true",
        "mixed": "false",
        "undeclared": "false",
        "partly-declared": "false",
    }
    assert kube.nodes["mixed"].labels[LABEL_REASON] == "verdict-refuted"
    assert kube.nodes["undeclared"].labels[LABEL_REASON] == "no-device-ids"
    assert kube.nodes["partly-declared"].labels[LABEL_REASON] == "device-ids-incomplete"
    assert "cpu-only" not in [p[0] for p in kube.patches]


def test_label_flips_when_a_verdict_flips_and_unchanged_nodes_are_not_patched() -> None:
    kube = FakeKube([gpu_node("n1", [A])])
    label_pass(kube, gate_with({A: Answer.ALLOWED}))
    label_pass(kube, gate_with({A: Answer.ALLOWED}))
    assert len(kube.patches) == 1
    label_pass(kube, gate_with({A: Answer.DENIED}))
    assert kube.nodes["n1"].labels[LABEL_VERIFIED] == "false"
    assert len(kube.patches) == 2


def test_a_device_id_claimed_by_two_nodes_verifies_neither() -> None:
    kube = FakeKube([gpu_node("real", [A]), gpu_node("borrower", [A])])
    results = {r.node: r for r in label_pass(kube, gate_with({A: Answer.ALLOWED}))}
    assert {n: (r.verified, r.reason) for n, r in results.items()} == {
        "real": (False, "device-id-on-several-nodes"),
        "borrower": (False, "device-id-on-several-nodes"),
    }


def test_device_map_overrides_annotations_and_bad_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "map"
    path.write_text(f"# node device ids\nn1 {A}\nn2 ../../etc\n")
    mapping = load_device_map(path)
    kube = FakeKube([gpu_node("n1", [B]), gpu_node("n2", [A]), Node("n3", gpu_count=1)])
    results = label_pass(kube, gate_with({A: Answer.ALLOWED}), device_map=mapping)
    assert {r.node: (r.verified, r.reason) for r in results} == {
        "n1": (True, "verified"),
        "n2": (False, "bad-device-id"),
        "n3": (False, "no-device-ids"),
    }
    path.write_text("n1\n")
    with pytest.raises(KubeError, match="map:1"):
        load_device_map(path)


def test_hardened_label_key() -> None:
    kube = FakeKube([gpu_node("n1", [A])])
    label_pass(kube, gate_with({A: Answer.ALLOWED}), label_key=HARDENED_LABEL)
    assert kube.nodes["n1"].labels[HARDENED_LABEL] == "true"
    assert check_label_key(HARDENED_LABEL) == HARDENED_LABEL
    with pytest.raises(ValueError):
        check_label_key("not a key!")


class _FakeApiServer:
    """Just GET /api/v1/nodes and PATCH /api/v1/nodes/{name}, with a bearer token check."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {
            "gpu-1": {
                "metadata": {
                    "name": "gpu-1",
                    "labels": {},
                    "annotations": {ANNOTATION_DEVICE_IDS: A},
                },
                "status": {"capacity": {"nvidia.com/gpu": "1"}},
            }
        }
        self.patches: list[tuple[str, str, Any]] = []


@pytest.fixture
def api_server() -> Iterator[tuple[str, _FakeApiServer]]:
    fake = _FakeApiServer()

    class Handler(BaseHTTPRequestHandler):
        def _auth(self) -> bool:
            if self.headers.get("Authorization") != "Bearer sekrit":
                self._send(401, {"message": "unauthorized"})
                return False
            return True

        def do_GET(self) -> None:
            if self._auth() and self.path == "/api/v1/nodes":
                self._send(200, {"items": list(fake.nodes.values())})

        def do_PATCH(self) -> None:
            if not self._auth():
                return
            name = self.path.rsplit("/", 1)[1]
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.patches.append((name, self.headers["Content-Type"], body))
            fake.nodes[name]["metadata"]["labels"].update(body["metadata"]["labels"])
            self._send(200, fake.nodes[name])

        def _send(self, status: int, obj: Any) -> None:
            raw = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()


def test_http_kube_api_lists_and_merge_patches(api_server: tuple[str, _FakeApiServer]) -> None:
    url, fake = api_server
    kube = HttpKubeAPI(url, "sekrit")
    label_pass(kube, gate_with({A: Answer.ALLOWED}))
    assert fake.patches == [
        (
            "gpu-1",
            "application/merge-patch+json",
            {"metadata": {"labels": {LABEL_VERIFIED: "true", LABEL_REASON: "verified"}}},
        )
    ]


def test_cli_label_once_against_the_stand_in(
    api_server: tuple[str, _FakeApiServer], tmp_path: Path
) -> None:
    url, fake = api_server
    token_file = tmp_path / "kube-token"
    token_file.write_text("sekrit\n")
    key_file = tmp_path / "verifier.pub"
    key_file.write_text(SigningKey.from_seed(bytes(32)).public_bytes.hex() + "\n")
    result = CliRunner().invoke(
        app,
        [
            "gate", "label", "--once", "--verifier", "http://127.0.0.1:1",
            "--verifier-key", str(key_file), "--state-dir", str(tmp_path / "s"),
            "--kube-url", url, "--kube-token-file", str(token_file), "--timeout", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.splitlines()[0])
    assert (out["node"], out["verified"], out["reason"]) == ("gpu-1", False, "no-token")
    assert fake.nodes["gpu-1"]["metadata"]["labels"][LABEL_VERIFIED] == "false"


def test_label_outside_a_pod_or_with_a_bad_token_exits_2(
    api_server: tuple[str, _FakeApiServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    key_file = tmp_path / "verifier.pub"
    key_file.write_text(SigningKey.from_seed(bytes(32)).public_bytes.hex() + "\n")
    base = ["gate", "label", "--once", "--verifier", "http://127.0.0.1:1"]
    base += ["--verifier-key", str(key_file), "--state-dir", str(tmp_path / "s")]
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 2 and "--kube-url" in result.output
    bad = tmp_path / "bad-token"
    bad.write_text("wrong\n")
    url, _ = api_server
    result = CliRunner().invoke(app, [*base, "--kube-url", url, "--kube-token-file", str(bad)])
    assert result.exit_code == 2 and "HTTP 401" in result.output
