"""Run agent sessions over UDP: all landmarks concurrently, each with retries and backoff.

The timed path of a session is a blocking socket in its own thread (one per landmark): it
sleeps in `recv`, answers a challenge the moment it wakes (sign, send) and goes back to sleep,
so nothing but the signature stands between a challenge and its answer. That cuts the
device's share of the RTT by tens of microseconds against an event-loop callback. Retries,
backoff and progress run on the event loop around it. `run_session` (asyncio) remains for
load generators that need thousands of cheap concurrent sessions.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from lightfence.backoff import backoff_delay_s
from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import DeviceIdentity
from lightfence.model.registry import LandmarkEntry
from lightfence.protocol import messages as m
from lightfence.protocol.agent_session import (
    AgentSession,
    AgentState,
    Answered,
    RecordReceived,
    SessionRejected,
)
from lightfence.protocol.record import MeasurementRecord

Progress = Callable[[str, str, int, int], None]
"""progress(landmark_id, status, rounds_answered, rounds) — for a progress display."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    attempt_timeout_s: float = 10.0
    """A session that has produced no record by then is abandoned and retried."""
    backoff_s: float = 0.5
    """First wait between attempts; doubled each time, with up to 50 % random jitter."""
    max_backoff_s: float = 8.0

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        return backoff_delay_s(attempt, self.backoff_s, self.max_backoff_s, rng)


@dataclass(frozen=True)
class LandmarkResult:
    landmark_id: str
    record: MeasurementRecord | None
    error: str | None
    attempts: int


class _AgentProtocol(asyncio.DatagramProtocol):
    def __init__(self, session: AgentSession, progress: Progress | None) -> None:
        self.session = session
        self.progress = progress
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        # The timed path on the device side: answer first, bookkeeping after.
        replies = self.session.receive_datagram(data)
        if self.transport is not None:
            for reply in replies:
                self.transport.sendto(reply)
        while (event := self.session.next_event()) is not None:
            if isinstance(event, Answered) and self.progress is not None:
                self.progress(
                    self.session.landmark_id, "measuring", event.round_no + 1, event.rounds
                )
            elif isinstance(event, RecordReceived | SessionRejected) and not self.done.done():
                self.done.set_result(None)
        if self.session.state is AgentState.FAILED and not self.done.done():
            self.done.set_result(None)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable and the like: the attempt times out and is retried


async def run_session(
    session: AgentSession, host: str, port: int, timeout_s: float, progress: Progress | None = None
) -> AgentSession:
    """One session over UDP; returns the session in its final (or timed-out) state."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _AgentProtocol(session, progress), remote_addr=(host, port)
    )
    try:
        transport.sendto(session.start())
        await asyncio.wait_for(proto.done, timeout_s)
    except TimeoutError:
        session.error = session.error or f"no record within {timeout_s:g} s"
    finally:
        transport.close()
    return session


def run_session_blocking(
    session: AgentSession, host: str, port: int, timeout_s: float, progress: Progress | None = None
) -> AgentSession:
    """One session over a blocking UDP socket (call it in a worker thread)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    deadline = time.monotonic() + timeout_s
    with socket.socket(family, kind, proto) as sock:
        sock.connect(addr)
        sock.send(session.start())
        while session.state in (AgentState.WAITING_SESSION, AgentState.MEASURING):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                session.error = f"no record within {timeout_s:g} s"
                break
            sock.settimeout(remaining)
            try:
                data = sock.recv(m.MAX_DATAGRAM_BYTES + 1)
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                session.error = f"nothing listens on {host}:{port} (ICMP port unreachable)"
                break
            for reply in session.receive_datagram(data):
                sock.send(reply)
            while (event := session.next_event()) is not None:
                if isinstance(event, Answered) and progress is not None:
                    progress(session.landmark_id, "measuring", event.round_no + 1, event.rounds)
    return session


async def measure_landmark(
    entry: LandmarkEntry,
    key: SigningKey,
    identity: DeviceIdentity,
    rounds: int,
    retry: RetryPolicy = RetryPolicy(),
    progress: Progress | None = None,
    rng: random.Random | None = None,
    executor: Executor | None = None,
) -> LandmarkResult:
    """Measure one landmark, retrying timeouts and retryable refusals with backoff.

    Each attempt's timed exchange runs in `executor` (default: the loop's default executor).
    """
    rng = rng or random.Random()
    loop = asyncio.get_running_loop()
    host, port = entry.host_port()
    error = "not attempted"
    for attempt in range(retry.attempts):
        if attempt:
            if progress is not None:
                progress(entry.id, f"retry {attempt} ({error})", 0, rounds)
            await asyncio.sleep(retry.delay_s(attempt - 1, rng))
        session = AgentSession(key, identity, entry.id, entry.public_key, rounds)
        try:
            await loop.run_in_executor(
                executor,
                run_session_blocking,
                session,
                host,
                port,
                retry.attempt_timeout_s,
                progress,
            )
        except OSError as exc:
            error = f"network error: {exc}"
            continue
        if session.record is not None:
            if progress is not None:
                progress(entry.id, "done", len(session.record.rtts_ns), rounds)
            return LandmarkResult(entry.id, session.record, None, attempt + 1)
        error = session.error or "failed"
        if session.state is AgentState.FAILED and not session.retryable:
            break  # a wrong key or a bad record will not improve by asking again
    if progress is not None:
        progress(entry.id, f"failed: {error}", 0, rounds)
    return LandmarkResult(entry.id, None, error, attempt + 1)


async def measure_all(
    entries: Iterable[LandmarkEntry],
    key: SigningKey,
    identity: DeviceIdentity,
    rounds: int = 10,
    retry: RetryPolicy = RetryPolicy(),
    progress: Progress | None = None,
) -> list[LandmarkResult]:
    """Measure every landmark concurrently (a thread each); one result per landmark, in order."""
    entries = list(entries)
    with ThreadPoolExecutor(max_workers=max(1, len(entries)), thread_name_prefix="lf-") as pool:
        tasks = [
            measure_landmark(e, key, identity, rounds, retry, progress, executor=pool)
            for e in entries
        ]
        return list(await asyncio.gather(*tasks))
