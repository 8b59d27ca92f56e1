"""The processes of bench.landmark_flood, run as a script against any tree's `lightfence`.

    PYTHONPATH=TREE/src python bench/flood_roles.py ROLE ARGS...

It imports only the standard library and `lightfence` APIs that every protocol version has
(LandmarkEndpoint, AgentSession, messages.Hello), so the same roles run against this tree and
against an earlier revision (the "before" of the comparison). Each role prints one JSON line.

* `landmark MAX_ROUNDS ROUND_TIMEOUT_MS`: a landmark on 127.0.0.1 with its defaults otherwise;
  prints its port, then its counters when a line arrives on stdin.
* `flood PORT RATE SOURCES SECONDS`: cookieless HELLOs at RATE per second from SOURCES
  sockets bound to 127.0.0.2, 127.0.0.3, ... (forged sources: never reads a reply). Stops
  after SECONDS or at a line on stdin.
* `honest PORT SESSIONS SLOTS TIMEOUT_S`: SESSIONS honest sessions, SLOTS at a time, one
  attempt each, each from its own address 127.0.1.1, 127.0.1.2, ...; prints how many
  completed with a verified record.
* `amplify PORT ROUNDS WAIT_S`: one HELLO asking ROUNDS rounds from a socket that reads
  everything for WAIT_S and answers nothing (the HELLO's forged source); then the same with
  the cookie echoed if a RETRY came (a peer that proved its address and went silent).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import selectors
import socket
import sys
import threading
import time
from typing import Any

from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import software_identity
from lightfence.landmark.server import LandmarkServer
from lightfence.protocol import messages as m
from lightfence.protocol.agent_session import AgentSession, AgentState
from lightfence.protocol.landmark_session import LandmarkConfig, LandmarkEndpoint

LANDMARK_ID = "flood"
HONEST_ROUNDS = 10


def key(label: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(label.encode()).digest())


def session(rounds: int, label: str = "honest-device") -> AgentSession:
    k = key(label)
    return AgentSession(k, software_identity(k), LANDMARK_ID, key(LANDMARK_ID).public_bytes, rounds)


def landmark(max_rounds: int, round_timeout_ms: int) -> None:
    cfg = LandmarkConfig(
        LANDMARK_ID, max_rounds=max_rounds, round_timeout_ns=round_timeout_ms * 1_000_000
    )
    endpoint = LandmarkEndpoint(cfg, key(LANDMARK_ID))
    server = LandmarkServer.bind(endpoint, "127.0.0.1", 0, "auto")
    print(json.dumps({"port": server.address[1]}), flush=True)
    cpu0 = time.process_time()

    def report() -> None:
        sys.stdin.readline()
        s = endpoint.stats
        out = {
            "cpu_s": time.process_time() - cpu0,
            "datagrams_received": s.datagrams_received,
            "sessions_opened": s.sessions_opened,
            "records_issued": s.records_issued,
            "retries_sent": getattr(s, "retries_sent", 0),
            "active_sessions": endpoint.active_sessions,
            "rejected": dict(s.rejected),
        }
        print(json.dumps(out), flush=True)
        os._exit(0)

    async def main() -> None:
        asyncio.get_running_loop().add_reader(sys.stdin.fileno(), report)
        await server.serve(asyncio.Event())

    asyncio.run(main())


def flood(port: int, rate: float, sources: int, seconds: float) -> None:
    socks = []
    for i in range(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # replies are never read
        s.bind((f"127.0.0.{2 + i}", 0))
        s.setblocking(False)
        socks.append(s)
    # One HELLO per source, each for its own (made-up) device: what a spoofer sends.
    hellos = []
    for i in range(sources):
        a = session(HONEST_ROUNDS, f"flood-{i}")
        hellos.append(a.start())
    stop = threading.Event()

    def wait_for_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    target = ("127.0.0.1", port)
    sent = dropped = 0
    t0 = time.monotonic()
    while not stop.is_set() and (now := time.monotonic()) - t0 < seconds:
        due = min(int(rate * (now - t0)), sent + int(rate * 0.05))  # no catch-up storm
        while sent < due:
            i = sent % sources
            try:
                socks[i].sendto(hellos[i], target)
            except BlockingIOError:
                dropped += 1
            sent += 1
        time.sleep(0.002)
    wall = time.monotonic() - t0
    print(json.dumps({"sent": sent, "send_dropped": dropped, "seconds": wall}), flush=True)


def honest(port: int, sessions: int, slots: int, timeout_s: float) -> None:
    sel = selectors.DefaultSelector()
    busy: dict[socket.socket, tuple[AgentSession, float]] = {}
    started = done = 0
    failures: dict[str, int] = {}

    def start(sock: socket.socket) -> None:
        nonlocal started
        a = session(HONEST_ROUNDS)
        busy[sock] = (a, time.monotonic())
        started += 1
        sock.send(a.start())

    def finish(sock: socket.socket, why: str | None) -> None:
        nonlocal done
        del busy[sock]
        if why is None:
            done += 1
        else:
            failures[why] = failures.get(why, 0) + 1
        sock.close()
        sel.unregister(sock)
        if started < sessions:
            open_slot()

    def open_slot() -> None:
        # Each honest session from its own address (127.0.1.1 onwards; never a flood source),
        # as devices are: one busy address would meet the landmark's per-source rate limit.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{1 + started // 250}.{1 + started % 250}", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, s)
        start(s)

    t0 = time.monotonic()
    for _ in range(min(slots, sessions)):
        open_slot()
    while busy:
        for sel_key, _ in sel.select(timeout=0.05):
            sock = sel_key.data
            if sock not in busy:
                continue
            try:
                data = sock.recv(m.MAX_DATAGRAM_BYTES + 1)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            a, _ = busy[sock]
            for reply in a.receive_datagram(data):
                sock.send(reply)
            while a.next_event() is not None:
                pass
            if a.state is AgentState.DONE:
                finish(sock, None)
            elif a.state is AgentState.FAILED:
                finish(sock, a.reject_code.name if a.reject_code is not None else "failed")
        now = time.monotonic()
        for sock, (_, since) in list(busy.items()):
            if now - since > timeout_s:
                finish(sock, "timeout")
    print(
        json.dumps(
            {
                "sessions": started,
                "completed": done,
                "failures": failures,
                "seconds": time.monotonic() - t0,
            }
        ),
        flush=True,
    )


def _collect(sock: socket.socket, wait_s: float) -> list[bytes]:
    got = []
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recv(m.MAX_DATAGRAM_BYTES + 1))
        except TimeoutError:
            break
    return got


def amplify(port: int, rounds: int, wait_s: float) -> None:
    out: dict[str, Any] = {"rounds": rounds}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        a = session(rounds, "silent-device")
        hello = a.start()
        sock.send(hello)
        replies = _collect(sock, wait_s)
        out["unanswered"] = {
            "bytes_in": len(hello),
            "bytes_out": sum(map(len, replies)),
            "datagrams_out": len(replies),
        }
        retry_type = getattr(m.MessageType, "RETRY", None)
        if retry_type is not None and replies and replies[0][3] == retry_type:
            # The peer proves it receives (echoes the cookie), then answers nothing.
            msg: Any = m.decode(replies[0])
            first: Any = m.decode(hello)  # Any: the base tree's Hello has no cookie field
            cookied = m.encode(dataclasses.replace(first, cookie=msg.cookie))
            sock.send(cookied)
            after = _collect(sock, wait_s)
            out["cookie_then_silent"] = {
                "bytes_in": len(hello) + len(cookied),
                "bytes_out": sum(map(len, replies)) + sum(map(len, after)),
                "datagrams_out": len(replies) + len(after),
            }
    print(json.dumps(out), flush=True)


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    if role == "landmark":
        landmark(int(args[0]), int(args[1]))
    elif role == "flood":
        flood(int(args[0]), float(args[1]), int(args[2]), float(args[3]))
    elif role == "honest":
        honest(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    elif role == "amplify":
        amplify(int(args[0]), int(args[1]), float(args[2]))
    else:
        sys.exit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
