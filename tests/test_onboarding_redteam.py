"""Issue 18 red team: each attack on onboarding and the remote clients, as a test that
reproduces it (the fix is in the commit that added the test)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from lightfence.cli.remote import Remote, RemoteError
from lightfence.evidence.submit import SubmitError, post_json
from lightfence.gate.client import VerifierClient
from lightfence.model.bearer import BadApiToken, bearer_headers

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
