"""Benchmark helpers: a real landmark server and a bare UDP echo, each in its own process.

Separate processes keep the landmark's event loop and CPU accounting apart from the load
generator's, as in a real deployment. Stopping a landmark returns its counters and the CPU
seconds its process used, so throughput can be stated per landmark core.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing as mp
import os
import socket
import struct
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from lightfence.crypto.keys import SigningKey
from lightfence.landmark.server import LandmarkServer
from lightfence.landmark.timestamping import ANCILLARY_BUFSIZE, Timestamper
from lightfence.model.registry import LandmarkEntry
from lightfence.protocol.landmark_session import LandmarkConfig, LandmarkEndpoint

CTX = mp.get_context("spawn")


LANDMARK_CPU = 0
AGENT_CPU = 1
"""The landmark (and the bare echo it is compared with) run on one CPU, the device side on
another, so both the echo baseline and a landmark round cross the same CPU boundary."""


def pin(cpu: int) -> None:
    """Pin this process to `cpu` where the OS allows it and the CPU exists."""
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def bench_key(label: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(label.encode()).digest())


def _serve_landmark(conn: Connection, name: str, cfg_kw: dict[str, Any], timestamps: str) -> None:
    pin(LANDMARK_CPU)
    endpoint = LandmarkEndpoint(LandmarkConfig(name, **cfg_kw), bench_key(name))
    server = LandmarkServer.bind(endpoint, "127.0.0.1", 0, timestamps)
    conn.send((server.address[1], server.ts.kernel, server.ts.reason))

    cpu0 = time.process_time()

    def snapshot() -> dict[str, Any]:
        s = endpoint.stats
        return {
            "cpu_s": time.process_time() - cpu0,
            "check_every_round": endpoint.config.check_every_round,
            "datagrams_received": s.datagrams_received,
            "rounds_answered": s.rounds_answered,
            "records_issued": s.records_issued,
            "records_kernel_timed": s.records_kernel_timed,
            "sessions_opened": s.sessions_opened,
            "sessions_without_record": s.sessions_without_record,
            "active_sessions": endpoint.active_sessions,
            "rejected": dict(s.rejected),
        }

    async def main() -> None:
        stop = asyncio.Event()

        def on_command() -> None:
            if conn.recv() == "stats":
                conn.send(snapshot())
            else:
                stop.set()

        asyncio.get_running_loop().add_reader(conn.fileno(), on_command)
        await server.serve(stop)

    asyncio.run(main())
    conn.send(snapshot())


@dataclass
class LandmarkProcess:
    proc: Any
    conn: Connection
    entry: LandmarkEntry
    kernel: bool
    reason: str

    def stats(self) -> dict[str, Any]:
        self.conn.send("stats")
        stats: dict[str, Any] = self.conn.recv()
        return stats

    def rss_kib(self) -> int:
        """Resident memory of the landmark process (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def stop(self) -> dict[str, Any]:
        self.conn.send("stop")
        stats: dict[str, Any] = self.conn.recv()
        self.proc.join(10)
        return stats


def start_landmark(name: str = "bench", timestamps: str = "auto", **cfg_kw: Any) -> LandmarkProcess:
    parent, child = CTX.Pipe()
    proc = CTX.Process(target=_serve_landmark, args=(child, name, cfg_kw, timestamps), daemon=True)
    proc.start()
    port, kernel, reason = parent.recv()
    entry = LandmarkEntry(name, bench_key(name).public_bytes, 0.0, 0.0, 0.0, f"127.0.0.1:{port}")
    return LandmarkProcess(proc, parent, entry, kernel, reason)


ECHO_REPORT = struct.Struct("!2sq")
"""After each echo, the echo sends a second datagram: b"TA" and its own turnaround in ns (kernel
TX stamp of the echo minus kernel RX stamp of the ping), so the prober can take the echo's
scheduling out of its RTT just as it takes the device's out of a landmark round's."""


def _echo(conn: Connection) -> None:
    pin(LANDMARK_CPU)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    ts = Timestamper.enable(sock, "auto")
    conn.send(sock.getsockname()[1])
    while True:
        data, anc, _, addr = sock.recvmsg(2048, ANCILLARY_BUFSIZE)
        if data == b"stop":
            return
        sock.sendto(data, addr)
        rx = ts.rx_kernel(anc)
        stamps = ts.drain_tx(sock)
        turnaround = stamps[-1][1].real_ns - rx.real_ns if rx is not None and stamps else -1
        sock.sendto(ECHO_REPORT.pack(b"TA", turnaround), addr)


def start_echo() -> tuple[Any, int]:
    """A bare UDP echo (blocking recvmsg/sendto loop, then a turnaround report: ECHO_REPORT) in
    its own process; returns (proc, port)."""
    parent, child = CTX.Pipe()
    proc = CTX.Process(target=_echo, args=(child,), daemon=True)
    proc.start()
    port: int = parent.recv()
    return proc, port


def stop_echo(proc: Any, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"stop", ("127.0.0.1", port))
    proc.join(5)
