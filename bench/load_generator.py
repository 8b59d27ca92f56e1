"""A lean load generator for landmark throughput: many real agent sessions on one socket.

Each of `slots` UDP sockets runs one AgentSession after another (real device key, every round
signed), driven with a plain selector instead of asyncio. The device side checks one record in
CHECK_EVERY_RECORDS in full (the agent checks them all; the tests cover that). The generator
then costs less per round than the landmark it loads, so the landmark is measured at saturation,
which is what capacity per core means.

`paced=R` offers about R rounds/s instead (sessions start on a schedule), for measuring timing
under a given background load.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import Protocol

from bench.landmark_process import bench_key
from lightfence.identity.device import software_identity
from lightfence.model.registry import LandmarkEntry
from lightfence.protocol import messages as m
from lightfence.protocol.agent_session import AgentSession, AgentState

ROUNDS = 10
STALL_S = 5.0
"""A session with no progress for this long is abandoned (and a new one started)."""
CHECK_EVERY_RECORDS = 50
_RECORD = int(m.MessageType.RECORD)


class _Flag(Protocol):
    def is_set(self) -> bool: ...


def saturate(
    entry: LandmarkEntry,
    seconds: float,
    slots: int,
    paced: float | None = None,
    stop: _Flag | None = None,
) -> tuple[int, int]:
    """Run sessions for `seconds` (or until `stop` is set) on `slots` sockets: back to back, or
    started at `paced` rounds per second (on whichever socket is free). Returns (rounds,
    records)."""
    key = bench_key("load-device")
    ident = software_identity(key)
    addr = entry.host_port()
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    busy: dict[socket.socket, tuple[AgentSession, float]] = {}
    free: list[socket.socket] = []
    counts = [0, 0]  # rounds, records
    interval_s = None if paced is None else ROUNDS / paced

    def start(sock: socket.socket, now: float) -> None:
        s = AgentSession(key, ident, entry.id, entry.public_key, ROUNDS)
        busy[sock] = (s, now)
        sock.send(s.start())

    def finish(sock: socket.socket, rounds: int, now: float) -> None:
        del busy[sock]
        if rounds:
            counts[0] += rounds
            counts[1] += 1
        if interval_s is None:
            start(sock, now)
        else:
            free.append(sock)

    for _ in range(slots):
        slot = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        slot.connect(addr)
        slot.setblocking(False)
        sel.register(slot, selectors.EVENT_READ, slot)
        socks.append(slot)
        free.append(slot)
    now = time.monotonic()
    deadline = now + seconds
    next_start = now
    next_stall_check = now + STALL_S
    next_stop_check = now
    if interval_s is None:
        while free:
            start(free.pop(), now)
    try:
        while (now := time.monotonic()) < deadline:
            wait = 0.1
            if interval_s is not None:
                while next_start <= now and free:
                    start(free.pop(), now)
                    next_start += interval_s
                wait = max(0.0, min(next_start - now, wait))
            for sel_key, _ in sel.select(timeout=wait):
                sock = sel_key.data
                try:
                    data = sock.recv(m.MAX_DATAGRAM_BYTES + 1)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
                if sock not in busy:
                    continue  # a late datagram of an abandoned session
                session, _ = busy[sock]
                if len(data) > 3 and data[3] == _RECORD and counts[1] % CHECK_EVERY_RECORDS:
                    # Not read: the landmark's own counters are the figures.
                    finish(sock, ROUNDS, now)
                    continue
                for reply in session.receive_datagram(data):
                    sock.send(reply)
                while session.next_event() is not None:
                    pass
                if session.state in (AgentState.DONE, AgentState.FAILED):
                    record = session.record
                    finish(sock, len(record.rtts_ns) if record is not None else 0, now)
                else:
                    busy[sock] = (session, now)
            if stop is not None and now >= next_stop_check:
                next_stop_check = now + 0.1
                if stop.is_set():
                    break
            if now >= next_stall_check:  # not every wake-up: the scan costs more than a round
                next_stall_check = now + STALL_S
                for sock, (_, seen) in list(busy.items()):
                    if now - seen > STALL_S:
                        finish(sock, 0, now)
    finally:
        for sock in socks:
            sel.unregister(sock)
            sock.close()
        sel.close()
    return counts[0], counts[1]
