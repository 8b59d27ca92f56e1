"""Emulated geography: user-space UDP relays on 127.0.0.1 that delay each datagram.

The machine has no WAN and no `netem`, so each (device, landmark) path is a relay: the agent
sends to the relay's address instead of the landmark's, the relay holds every datagram for the
path's one-way delay (half its RTT, plus jitter) and forwards it. Landmark and agent run their
production code; the landmark sees the relay as the device's address and measures the RTT on its
own clock as always. Nothing here talks to the verifier.

Path RTTs (`path_rtt_ms`): the measured minimum RTT of the shipped data set where both ends are
data-set hosts and the pair was measured; otherwise the distance model of `sim.latency` at
`MODEL_QUANTILE`. Jitter: the data set holds minimum RTTs only, so each datagram gets an extra,
non-negative delay drawn from an exponential distribution with mean `JITTER_FRACTION` of its
one-way delay; the landmark keeps the fastest round, so a record's RTT lands within a few per cent
of the path's RTT.

Scheduling: one thread owns every relay socket and a heap of due datagrams. It waits in epoll
until shortly before the next deadline, then sleeps in short steps to the deadline, so a datagram
leaves at most a few hundred microseconds late on an idle machine. The lateness of every
forwarded datagram is recorded (`RelayHub.lateness_summary`): that, plus the time a datagram sits
in the socket buffer before the thread reads it, is the emulation's own added error. It only ever
adds delay, so it can only widen a cap, never make a verdict unsound.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import multiprocessing
import os
import random
import select
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from lightfence.geo.sphere import great_circle_km
from lightfence.rttdata import Dataset
from lightfence.sim.latency import shipped_latency_model

MODEL_QUANTILE = 0.5
"""Network quantile of the distance model for pairs the data set never measured (the median)."""
JITTER_FRACTION = 0.05
"""Mean extra one-way delay per datagram, as a fraction of the path's one-way delay."""
MIN_JITTER_MS = 0.02
SPIN_MARGIN_NS = 2_000_000
"""Wake from epoll this long before a deadline (epoll waits in whole milliseconds), then sleep
in short steps: the deadline is met to within a sleep step instead of up to a millisecond late."""
SPIN_STEP_S = 0.0001
MAX_DATAGRAM_BYTES = 65_535
RELAY_RT_PRIORITY = 10
RELAY_NICE = -5
"""CPU priority of the relay process where the OS allows raising it: on a busy machine a late
relay is emulation error, a late verifier is not."""
LATENESS_SAMPLES = 200_000
"""Most recent datagrams whose lateness is kept."""


@dataclass(frozen=True)
class Site:
    """Where an emulated host is: a data-set host id where there is one, and its coordinates."""

    lat: float
    lon: float
    host_id: str | None = None


def site_of(dataset: Dataset, host_id: str) -> Site:
    h = dataset.hosts[host_id]
    return Site(h.lat, h.lon, host_id)


def path_rtt_ms(dataset: Dataset, a: Site, b: Site, quantile: float = MODEL_QUANTILE) -> float:
    """Minimum RTT between two sites: measured where the data set has the pair, else modelled."""
    if a.host_id is not None and b.host_id is not None and a.host_id != b.host_id:
        measured = dataset.rtt_ms(a.host_id, b.host_id)
        if measured is not None:
            return measured
    d_km = float(great_circle_km(a.lat, a.lon, b.lat, b.lon))
    return float(shipped_latency_model().rtt_ms(max(d_km, 1.0), quantile))


@dataclass
class _Relay:
    front: socket.socket
    """Agent side: the address the agent is given instead of the landmark's."""
    back: socket.socket
    """Landmark side, connected to the landmark."""
    one_way_ns: int
    jitter_mean_ns: float
    agent_addr: tuple[str, int] | None = None
    forwarded: int = 0


@dataclass
class LatenessStats:
    """How late the relays sent datagrams against their due times (the emulation's error)."""

    samples_ns: deque[int] = field(default_factory=lambda: deque(maxlen=LATENESS_SAMPLES))

    def summary(self) -> dict[str, Any]:
        if not self.samples_ns:
            return {"datagrams": 0}
        s = sorted(self.samples_ns)

        def q(p: float) -> float:
            return s[min(len(s) - 1, int(p * len(s)))] / 1e6

        return {
            "datagrams": len(s),
            "median_ms": q(0.5),
            "p90_ms": q(0.9),
            "p99_ms": q(0.99),
            "max_ms": s[-1] / 1e6,
        }


class RelayHub:
    """Every emulated path of a run, served by one scheduling thread."""

    def __init__(self, seed: int = 0, jitter_fraction: float = JITTER_FRACTION) -> None:
        if not jitter_fraction >= 0:
            raise ValueError("jitter_fraction must be >= 0")
        self._rng = random.Random(seed)
        self.jitter_fraction = jitter_fraction
        self._relays: dict[int, tuple[_Relay, bool]] = {}
        """fd -> (relay, is_front)."""
        self._due: list[tuple[int, int, socket.socket, bytes, tuple[str, int] | None]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._poll = select.epoll()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._poll.register(self._wake_r.fileno(), select.EPOLLIN)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lateness = LatenessStats()

    def add_path(
        self,
        landmark_addr: tuple[str, int],
        rtt_ms: float,
        front_addr: tuple[str, int] = ("127.0.0.1", 0),
        transparent: bool = False,
    ) -> tuple[str, int]:
        """A relay towards `landmark_addr` with round trip `rtt_ms`; returns its address.

        `transparent`: bind the agent side to `front_addr` even though no interface here has
        that address (IP_TRANSPARENT, needs CAP_NET_ADMIN). A router whose policy routing
        delivers a device's packets for the landmark's own address locally then delays them
        without the device or the landmark seeing any other address (tests/netns_lab.py).
        """
        if not rtt_ms >= 0:
            raise ValueError(f"path RTT must be >= 0 ms, got {rtt_ms}")
        front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if transparent:
            front.setsockopt(socket.SOL_IP, socket.IP_TRANSPARENT, 1)
        front.bind(front_addr)
        back.connect(landmark_addr)
        for s in (front, back):
            s.setblocking(False)
        one_way_ms = rtt_ms / 2.0
        relay = _Relay(
            front,
            back,
            int(one_way_ms * 1e6),
            max(MIN_JITTER_MS, self.jitter_fraction * one_way_ms) * 1e6
            if self.jitter_fraction
            else 0.0,
        )
        with self._lock:
            self._relays[front.fileno()] = (relay, True)
            self._relays[back.fileno()] = (relay, False)
        self._poll.register(front.fileno(), select.EPOLLIN)
        self._poll.register(back.fileno(), select.EPOLLIN)
        host, port = front.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lf-relays", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            socks = {id(r): r for r, _ in self._relays.values()}
            self._relays.clear()
        for r in socks.values():
            r.front.close()
            r.back.close()
        self._poll.close()
        self._wake_r.close()
        self._wake_w.close()

    # --- the scheduling thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._send_due()
            wait_ns = self._due[0][0] - time.monotonic_ns() if self._due else 50_000_000
            if wait_ns > SPIN_MARGIN_NS:
                events = self._poll.poll((wait_ns - SPIN_MARGIN_NS) / 1e9)
            else:
                events = self._poll.poll(0)
                if not events and wait_ns > 0:
                    time.sleep(min(SPIN_STEP_S, wait_ns / 1e9))
            for fd, _ in events:
                self._read(fd)

    def _read(self, fd: int) -> None:
        entry = self._relays.get(fd)
        if entry is None:
            return  # the wake-up socket
        relay, is_front = entry
        sock = relay.front if is_front else relay.back
        while True:
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP unreachable from a stopped landmark: the agent retries
            now = time.monotonic_ns()
            jitter_ns = (
                int(self._rng.expovariate(1.0 / relay.jitter_mean_ns))
                if relay.jitter_mean_ns
                else 0
            )
            due = now + relay.one_way_ns + jitter_ns
            if is_front:
                relay.agent_addr = (str(addr[0]), int(addr[1]))
                heapq.heappush(self._due, (due, next(self._seq), relay.back, data, None))
            elif relay.agent_addr is not None:
                heapq.heappush(
                    self._due, (due, next(self._seq), relay.front, data, relay.agent_addr)
                )

    def _send_due(self) -> None:
        while self._due and self._due[0][0] <= time.monotonic_ns():
            due, _, sock, data, addr = heapq.heappop(self._due)
            try:
                if addr is None:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except OSError:
                continue  # a lost datagram: the protocol's timeouts and retries handle it
            self.lateness.samples_ns.append(time.monotonic_ns() - due)


Path = tuple[tuple[str, int], float]
"""(landmark address, path RTT in ms)."""


class RelayProcess:
    """A RelayHub in a process of its own, so its timing never waits for another thread's hold on
    the interpreter lock (the verifier's geometry, a hundred agent threads)."""

    def __init__(
        self, paths: list[Path], seed: int = 0, jitter_fraction: float = JITTER_FRACTION
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_relay_main,
            args=(child, paths, seed, jitter_fraction),
            name="lf-relays",
            daemon=True,
        )
        self._proc.start()
        child.close()
        reply = self._conn.recv() if self._conn.poll(30) else "the relay process did not start"
        if isinstance(reply, str):
            self.close()
            raise RuntimeError(f"relays: {reply}")
        self.addresses: list[tuple[str, int]] = reply

    def lateness(self) -> dict[str, Any]:
        try:
            self._conn.send("stats")
            if self._conn.poll(10):
                out: dict[str, Any] = self._conn.recv()
                return out
        except (OSError, EOFError):
            pass
        return {"datagrams": 0}

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=5)
        self._conn.close()


def _raise_priority() -> str:
    """Real-time scheduling (SCHED_FIFO) where permitted, else a higher nice level, else none.

    On a busy machine a process that wakes from epoll can wait tens of milliseconds for a CPU;
    a real-time relay preempts ordinary work at once. It sleeps between datagrams, and the
    kernel's real-time throttling bounds it even if it did not.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RELAY_RT_PRIORITY))
        return "SCHED_FIFO"
    with contextlib.suppress(OSError):
        os.nice(RELAY_NICE)
        return f"nice {RELAY_NICE}"
    return "default"


def _relay_main(conn: Connection, paths: list[Path], seed: int, jitter_fraction: float) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when the relays stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    scheduling = _raise_priority()
    hub = RelayHub(seed, jitter_fraction)
    try:
        addresses = [hub.add_path(addr, rtt) for addr, rtt in paths]
    except (OSError, ValueError) as exc:
        conn.send(str(exc))
        return
    hub.start()
    conn.send(addresses)
    try:
        while True:
            msg = conn.recv()
            if msg == "stats":
                conn.send({**hub.lateness.summary(), "scheduling": scheduling})
            else:
                break
    except EOFError:
        pass  # the parent went away
    finally:
        hub.close()
