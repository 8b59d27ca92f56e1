"""Kubernetes node labelling: one label per node from the gate's answers for its GPUs.

A node is labelled `lightfence.io/verified=true` only when it lists a device id for every GPU
it offers (annotation `lightfence.io/device-ids`, comma-separated, set by whoever installs the
agent) and the gate allows every one of them; otherwise `false`, with the reason code in
`lightfence.io/gate-reason`. A scheduling rule requiring the label (examples/kubernetes/) keeps
new GPU pods off the node. Running pods are never touched: this is admission, not a kill switch.

The labeller talks to the gate and to the cluster's own API server through the `KubeAPI`
protocol (two calls). No cluster runs in this project's tests: they drive `label_pass` through
an in-memory fake and `HttpKubeAPI` against a loopback stand-in for the two endpoints.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from lightfence.gate.client import check_device_id
from lightfence.gate.decision import Answer, Decision

LABEL_VERIFIED = "lightfence.io/verified"
HARDENED_LABEL = "node-restriction.kubernetes.io/lightfence-verified"
"""Kubelets may set their own node's labels, except under this prefix (NodeRestriction): use it
so that a compromised node cannot label itself verified."""
LABEL_REASON = "lightfence.io/gate-reason"
ANNOTATION_DEVICE_IDS = "lightfence.io/device-ids"
GPU_RESOURCE = "nvidia.com/gpu"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
KUBE_TIMEOUT_S = 10.0
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)


class KubeError(Exception):
    """The API server could not be reached or refused a request."""


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    gpu_count: int = 0
    """GPUs the node offers (capacity of nvidia.com/gpu)."""

    @property
    def device_ids(self) -> list[str]:
        raw = self.annotations.get(ANNOTATION_DEVICE_IDS, "")
        return [d.strip() for d in raw.split(",") if d.strip()]


class KubeAPI(Protocol):
    def list_nodes(self) -> list[Node]: ...

    def patch_node_labels(self, name: str, labels: Mapping[str, str]) -> None: ...


@dataclass(frozen=True)
class NodeResult:
    node: str
    verified: bool
    reason: str
    devices: list[dict[str, str]]
    changed: bool

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "verified": self.verified,
            "reason": self.reason,
            "devices": self.devices,
            "changed": self.changed,
        }


def node_verdict(
    ids: list[str], gpu_count: int, check: Callable[[str], Decision], shared: set[str]
) -> tuple[bool, str, list[dict[str, str]]]:
    """(verified, reason, answer per device) for a node: every GPU covered and allowed.

    `shared` holds device ids claimed by more than one node in this pass: one GPU cannot be in
    two nodes, so a copied id (a node borrowing a verified GPU's id) labels every claimant false.
    """
    if not ids:
        return False, "no-device-ids", []
    for device_id in ids:
        try:
            check_device_id(device_id)
        except ValueError:
            return False, "bad-device-id", []
    if len(set(ids)) < gpu_count:
        return False, "device-ids-incomplete", []
    if shared.intersection(ids):
        return False, "device-id-on-several-nodes", []
    devices = []
    first_refusal = ""
    for device_id in ids:
        d = check(device_id)
        devices.append({"device_id": device_id, "answer": d.answer.value, "reason": d.reason})
        if d.answer is not Answer.ALLOWED and not first_refusal:
            first_refusal = d.reason
    return (not first_refusal), (first_refusal or "verified"), devices


def load_device_map(path: Path) -> dict[str, list[str]]:
    """Node name to device ids, from lines `NODE DEVICE_ID[,DEVICE_ID...]` (repeatable, # comments).

    Kept by the operator (a ConfigMap), out of reach of the nodes themselves, unlike annotations
    which a node's kubelet may edit.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise KubeError(f"cannot read device map {path}: {exc.strerror}") from None
    mapping: dict[str, list[str]] = {}
    for n, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise KubeError(f"{path}:{n}: expected 'NODE DEVICE_ID[,DEVICE_ID...]'")
        mapping.setdefault(fields[0], []).extend(d for d in fields[1].split(",") if d)
    return mapping


def check_label_key(key: str) -> str:
    """`prefix/name` as Kubernetes accepts it; ValueError with the rule otherwise."""
    if not _LABEL_KEY.fullmatch(key) or len(key.rpartition("/")[2]) > 63:
        raise ValueError(f"not a Kubernetes label key (dns-prefix/name, name <= 63 chars): {key!r}")
    return key


def label_pass(
    kube: KubeAPI,
    check: Callable[[str], Decision],
    *,
    label_key: str = LABEL_VERIFIED,
    device_map: Mapping[str, list[str]] | None = None,
) -> list[NodeResult]:
    """Check every GPU node once and set its labels where they changed.

    Device ids come from `device_map` when given (recommended), else from each node's
    `lightfence.io/device-ids` annotation. Nodes with no GPU and no device id are left alone.
    """
    nodes = kube.list_nodes()
    ids_of = {
        n.name: list(device_map.get(n.name, [])) if device_map is not None else n.device_ids
        for n in nodes
    }
    claims = Counter(d for ids in ids_of.values() for d in set(ids))
    shared = {d for d, count in claims.items() if count > 1}
    results = []
    for node in nodes:
        ids = ids_of[node.name]
        if node.gpu_count == 0 and not ids:
            continue
        verified, reason, devices = node_verdict(ids, node.gpu_count, check, shared)
        wanted = {label_key: "true" if verified else "false", LABEL_REASON: reason}
        changed = any(node.labels.get(k) != v for k, v in wanted.items())
        if changed:
            kube.patch_node_labels(node.name, wanted)
        results.append(NodeResult(node.name, verified, reason, devices, changed))
    return results


def _gpu_count(capacity: Mapping[str, Any]) -> int:
    try:
        return max(0, int(str(capacity.get(GPU_RESOURCE, "0"))))
    except ValueError:
        return 0


class HttpKubeAPI:
    """The two API-server calls over HTTPS with a bearer token (a service account in-cluster)."""

    def __init__(self, base_url: str, token: str | None, ca_file: Path | None = None) -> None:
        import httpx  # only the labeller needs it; keep `lightfence` start-up light

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
            timeout=KUBE_TIMEOUT_S,
            follow_redirects=False,
            trust_env=False,
        )

    @classmethod
    def in_cluster(cls) -> HttpKubeAPI:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeError(
                "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset); pass --kube-url"
            )
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass  # a host name
        try:
            token = (SERVICE_ACCOUNT_DIR / "token").read_text().strip()
        except OSError as exc:
            raise KubeError(f"cannot read the service account token: {exc.strerror}") from None
        return cls.from_url(f"https://{host}:{port}", None, SERVICE_ACCOUNT_DIR / "ca.crt", token)

    @classmethod
    def from_url(
        cls,
        url: str,
        token_file: Path | None,
        ca_file: Path | None = None,
        token: str | None = None,
    ) -> HttpKubeAPI:
        if token_file is not None:
            try:
                token = token_file.read_text().strip()
            except OSError as exc:
                raise KubeError(f"cannot read {token_file}: {exc.strerror}") from None
        try:
            return cls(url, token, ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise KubeError(f"cannot load the API server's CA {ca_file}: {exc}") from None

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise KubeError(f"API server unreachable: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 300:
            raise KubeError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError:
            raise KubeError(f"{method} {path}: answer is not JSON") from None

    def list_nodes(self) -> list[Node]:
        body = self._request("GET", "/api/v1/nodes")
        nodes = []
        for item in body.get("items", []) if isinstance(body, dict) else []:
            meta = item.get("metadata", {})
            nodes.append(
                Node(
                    name=str(meta.get("name", "")),
                    labels=dict(meta.get("labels") or {}),
                    annotations=dict(meta.get("annotations") or {}),
                    gpu_count=_gpu_count((item.get("status") or {}).get("capacity") or {}),
                )
            )
        return [n for n in nodes if n.name]

    def patch_node_labels(self, name: str, labels: Mapping[str, str]) -> None:
        self._request(
            "PATCH",
            f"/api/v1/nodes/{quote(name, safe='')}",
            json={"metadata": {"labels": dict(labels)}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
