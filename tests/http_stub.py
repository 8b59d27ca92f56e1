"""A stand-in verifier on 127.0.0.1 that records what is POSTed to it (real HTTP, stdlib)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def stub_verifier(
    status: int = 201, failures: Sequence[int] = ()
) -> Iterator[tuple[str, list[tuple[str, str, Any]]]]:
    """Yields (base URL, received) where received holds (path, authorization, JSON body).

    The first requests are answered with the statuses in `failures`, in turn, and not recorded;
    every later one with `status`.
    """
    received: list[tuple[str, str, Any]] = []
    pending = list(failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = pending.pop(0) if pending else status
            if answer == status:
                auth = self.headers.get("Authorization", "")
                received.append((self.path, auth, json.loads(body)))
            self.send_response(answer)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "stored"}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
