"""Landmark server and agent over real UDP sockets on 127.0.0.1 (real keys, real signatures)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from lightfence.agent.measure import RetryPolicy, measure_all, measure_landmark
from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import software_identity
from lightfence.landmark.batch_recv import BatchReceiver
from lightfence.landmark.server import LandmarkServer
from lightfence.model.registry import LandmarkEntry
from lightfence.protocol.landmark_session import LandmarkConfig, LandmarkEndpoint
from lightfence.protocol.record import MeasurementRecord, TimestampSource, verify
from record_factory import seeded_key

DEVICE = seeded_key("device")
IDENTITY = software_identity(DEVICE)
HAS_RECVMMSG = BatchReceiver.available()
FAST = RetryPolicy(attempts=2, attempt_timeout_s=2.0, backoff_s=0.01)


@asynccontextmanager
async def landmark(
    name: str, key: SigningKey, timestamps: str = "auto", batched: bool = True, **cfg: Any
) -> AsyncIterator[tuple[LandmarkServer, LandmarkEntry]]:
    endpoint = LandmarkEndpoint(LandmarkConfig(name, **cfg), key)
    server = LandmarkServer.bind(endpoint, "127.0.0.1", 0, timestamps, batched=batched)
    host, port = server.address
    entry = LandmarkEntry(name, key.public_bytes, 50.0, 8.0, 0.0, f"{host}:{port}")
    stop = asyncio.Event()
    task = asyncio.create_task(server.serve(stop))
    try:
        yield server, entry
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def check(record: MeasurementRecord | None, landmark_key: SigningKey) -> MeasurementRecord:
    assert record is not None
    verify(record, landmark_key.public_bytes, DEVICE.public_bytes)
    assert len(record.rtts_ns) == record.rounds_sent
    assert all(0 < rtt < 1_000_000_000 for rtt in record.rtts_ns)
    return record


def test_agent_measures_two_landmarks_concurrently() -> None:
    ka, kb = seeded_key("lm-a"), seeded_key("lm-b")
    seen: list[MeasurementRecord] = []

    async def main() -> None:
        async with landmark("a", ka) as (sa, ea), landmark("b", kb) as (_, eb):
            sa.on_record = seen.append
            results = await measure_all([ea, eb], DEVICE, IDENTITY, rounds=10, retry=FAST)
            ra, rb = (check(r.record, k) for r, k in zip(results, (ka, kb), strict=True))
            assert ra.landmark_id == "a" and rb.landmark_id == "b"
            assert seen == [ra]
            if sa.ts.kernel:
                assert ra.timestamp_source is TimestampSource.KERNEL
            assert not sa.endpoint.stats.rejected and sa.endpoint.active_sessions == 0

    asyncio.run(main())


def test_monotonic_fallback_is_reported_in_the_record() -> None:
    key = seeded_key("lm-m")

    async def main() -> None:
        async with landmark("m", key, timestamps="monotonic") as (server, entry):
            assert not server.ts.kernel and "monotonic" in server.ts.reason
            result = await measure_landmark(entry, DEVICE, IDENTITY, 5, FAST)
            record = check(result.record, key)
            assert record.timestamp_source is TimestampSource.MONOTONIC

    asyncio.run(main())


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvmsg"])
def test_noise_at_a_serving_landmark_is_counted_and_measuring_still_works(batched: bool) -> None:
    key = seeded_key("lm-n")

    async def main() -> None:
        async with landmark("n", key, batched=batched) as (server, entry):
            assert server.receives_batched == (batched and server.ts.kernel and HAS_RECVMMSG)
            noise = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(300):
                noise.sendto(bytes([i % 256]) * (i % 97) + b"LF", server.address)
            noise.sendto(b"LF\x02\x04" + bytes(81), server.address)  # response, no session
            noise.sendto(b"x" * 1500, server.address)
            noise.close()
            result = await measure_landmark(entry, DEVICE, IDENTITY, 5, FAST)
            record = check(result.record, key)
            if server.ts.kernel:
                assert record.timestamp_source is TimestampSource.KERNEL
            rejected = server.endpoint.stats.rejected
            assert rejected["unknown_session"] == 1 and rejected["oversized"] == 1
            assert sum(rejected.values()) == 302

    asyncio.run(main())


def test_wrong_landmark_key_fails_without_retrying() -> None:
    key = seeded_key("lm-w")

    async def main() -> None:
        async with landmark("w", key, round_timeout_ns=100_000_000) as (_, entry):
            impostor = LandmarkEntry("w", seeded_key("other").public_bytes, 0, 0, 0, entry.address)
            result = await measure_landmark(impostor, DEVICE, IDENTITY, 3, FAST)
            assert result.record is None and result.attempts == 1
            assert "not the key in the landmarks file" in (result.error or "")

    asyncio.run(main())


def test_silent_landmark_is_retried_with_backoff_then_reported() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    entry = LandmarkEntry(
        "dead", seeded_key("dead").public_bytes, 0, 0, 0, f"127.0.0.1:{sink.getsockname()[1]}"
    )
    events: list[str] = []

    async def main() -> None:
        retry = RetryPolicy(attempts=3, attempt_timeout_s=0.2, backoff_s=0.01)
        result = await measure_landmark(
            entry, DEVICE, IDENTITY, 3, retry, progress=lambda lid, st, a, n: events.append(st)
        )
        assert result.record is None and result.attempts == 3
        assert "no record within" in (result.error or "")

    asyncio.run(main())
    sink.close()
    assert sum(e.startswith("retry") for e in events) == 2 and events[-1].startswith("failed")


def test_busy_landmark_refuses_then_serves_after_backoff() -> None:
    key = seeded_key("lm-b2")

    async def main() -> None:
        async with landmark("b2", key, hello_burst=1, hello_rate_per_s=20) as (server, entry):
            retry = RetryPolicy(attempts=5, attempt_timeout_s=2.0, backoff_s=0.06)
            results = await measure_all([entry, entry], DEVICE, IDENTITY, 3, retry)
            for r in results:
                check(r.record, key)
            assert server.endpoint.stats.rejected["rate_limited"] >= 1
            assert max(r.attempts for r in results) >= 2

    asyncio.run(main())


def test_bind_failure_is_an_os_error() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    endpoint = LandmarkEndpoint(LandmarkConfig("x"), seeded_key("x"))
    with pytest.raises(OSError):
        LandmarkServer.bind(endpoint, "127.0.0.1", taken.getsockname()[1])
    taken.close()
