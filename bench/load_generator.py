"""A lean load generator for landmark throughput: many real agent sessions on one thread.

Each slot is a UDP socket running one AgentSession after another (real device key, every round
signed, every record checked), driven with a plain selector instead of asyncio so the generator
costs less per round than the landmark it loads: the landmark is then measured at saturation,
which is what capacity per core means.
"""

from __future__ import annotations

import selectors
import socket
import time

from bench.landmark_process import bench_key
from lightfence.crypto.identity import software_identity
from lightfence.landmark.registry import LandmarkEntry
from lightfence.protocol import messages as m
from lightfence.protocol.agent_session import AgentSession, AgentState

ROUNDS = 10
STALL_S = 5.0
"""A session with no progress for this long is abandoned and a new one started."""


def saturate(entry: LandmarkEntry, seconds: float, slots: int) -> tuple[int, int]:
    """Run back-to-back sessions on `slots` sockets for `seconds`. Returns (rounds, records)."""
    key = bench_key("load-device")
    ident = software_identity(key)
    addr = entry.host_port()
    sel = selectors.DefaultSelector()
    sessions: dict[socket.socket, tuple[AgentSession, float]] = {}
    rounds = records = 0

    def start(sock: socket.socket) -> None:
        s = AgentSession(key, ident, entry.id, entry.public_key, ROUNDS)
        sessions[sock] = (s, time.monotonic())
        sock.send(s.start())

    for _ in range(slots):
        slot = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        slot.connect(addr)
        slot.setblocking(False)
        sel.register(slot, selectors.EVENT_READ, slot)
        start(slot)
    deadline = time.monotonic() + seconds
    next_stall_check = time.monotonic() + STALL_S
    try:
        while (now := time.monotonic()) < deadline:
            for sel_key, _ in sel.select(timeout=0.1):
                sock = sel_key.data
                try:
                    data = sock.recv(m.MAX_DATAGRAM_BYTES + 1)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
                session, _ = sessions[sock]
                for reply in session.receive_datagram(data):
                    sock.send(reply)
                while session.next_event() is not None:
                    pass
                if session.state in (AgentState.DONE, AgentState.FAILED):
                    if session.record is not None:
                        rounds += len(session.record.rtts_ns)
                        records += 1
                    start(sock)
                else:
                    sessions[sock] = (session, now)
            if now >= next_stall_check:  # not every wake-up: the scan costs more than a round
                next_stall_check = now + STALL_S
                for sock, (_, seen) in list(sessions.items()):
                    if now - seen > STALL_S:
                        start(sock)
    finally:
        for sock in sessions:
            sel.unregister(sock)
            sock.close()
        sel.close()
    return rounds, records
