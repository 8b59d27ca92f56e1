"""A stand-in for the verifier service's `GET /devices/{id}/token`, on a real loopback socket.

It serves tokens made with the real `token_for_latest_verdict`, exactly as the service (issue 4)
will; it stands in only until that endpoint is wired, and then tests can point at the service.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.gate.issuer import token_for_latest_verdict, token_response
from lightfence.model.policy import parse_policy_spec

VERIFIER = SigningKey.from_seed(bytes(range(32)))
POLICY = parse_policy_spec("outside:CN,HK,MO", liars=1)
"""The policy every stub token is issued under (a verdict that tolerated one liar)."""


@dataclass
class FakeVerifier:
    """Per-device answers: a verdict (served as a fresh token), or a raw (status, body)."""

    verdicts: dict[str, VerdictKind] = field(default_factory=dict)
    raw: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    now_unix_s: float | None = None
    """Issue tokens at this time instead of the real clock (for expiry scenarios)."""


def _handler(state: FakeVerifier) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            parts = self.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "devices" or parts[2] != "token":
                self._send(404, b"{}", {})
                return
            device = parts[1]
            if device in state.raw:
                self._send(*state.raw[device])
                return
            verdict = state.verdicts.get(device)
            if verdict is None:
                self._send(404, b'{"detail": "no verdict for this device"}', {})
                return
            now = state.now_unix_s if state.now_unix_s is not None else time.time()
            text = token_for_latest_verdict(device, verdict, POLICY, VERIFIER, now, 300)
            self._send(200, json.dumps(token_response(text)).encode(), {})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve_verifier() -> Iterator[tuple[str, FakeVerifier]]:
    """(base URL, state) of a stub verifier on 127.0.0.1, shut down on exit."""
    state = FakeVerifier()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    """A loopback port with nothing listening: a verifier that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
