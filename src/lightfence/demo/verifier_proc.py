"""The demo's verifier: the production FastAPI app under uvicorn, in a child process.

A process of its own keeps its verdict geometry off the interpreter lock that the landmarks'
and agents' timed paths need, and it runs at a lower CPU priority (nice 5) for the same reason.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import threading
from multiprocessing.connection import Connection

from lightfence.demo.orphan import die_with_parent
from lightfence.verifier.config import VerifierConfig

START_TIMEOUT_S = 60.0
NICE = 5


class VerifierProcess:
    def __init__(self, config: VerifierConfig, port: int = 0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_verifier_main,
            args=(child, config, port, os.getpid(), _on_main_thread()),
            name="lf-verifier",
            daemon=True,
        )
        self._proc.start()
        child.close()
        reply: object = "the verifier did not start in time"
        try:
            if self._conn.poll(START_TIMEOUT_S):
                with contextlib.suppress(EOFError):
                    reply = self._conn.recv()
        except BaseException:  # SIGTERM or Ctrl-C while waiting: no one else holds the child
            self.close()
            raise
        if not isinstance(reply, int):
            self.close()
            raise OSError(f"verifier: {reply}")
        self.port = reply

    def close(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()  # SIGTERM: uvicorn shuts down gracefully
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5)
        self._conn.close()


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _verifier_main(
    conn: Connection, config: VerifierConfig, port: int, parent_pid: int, kernel_signal: bool
) -> None:
    die_with_parent(parent_pid, kernel_signal)  # first: a SIGKILLed demo leaves no verifier
    import uvicorn

    from lightfence.dashboard import countries_geojson
    from lightfence.verifier.api.app import create_app

    with contextlib.suppress(OSError):
        os.nice(NICE)
    logging.getLogger("lightfence.verifier").setLevel(logging.ERROR)
    try:
        app = create_app(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)  # connections queue from now on, before uvicorn accepts them
    except OSError as exc:
        conn.send(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
        return
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False))
    conn.send(int(sock.getsockname()[1]))
    conn.close()
    # Natural Earth takes seconds to load; load it once now (requests queue meanwhile), not
    # twice at once in the first enrolment and the dashboard's first map.
    countries_geojson()
    server.run(sockets=[sock])
