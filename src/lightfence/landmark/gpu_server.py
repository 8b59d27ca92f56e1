"""The landmark's UDP adapter for GPU-signed rounds (protocol/gpu_session.py).

A separate socket from the key rounds' `LandmarkServer`, so the key rounds' timed path (kernel
timestamps, batched receive) is untouched. GPU rounds are timed with CLOCK_MONOTONIC read just
before the challenge's `sendto` and just after the answer's receive returns: an RTT can only
come out longer than the signal's, never shorter. Kernel stamps would tighten it by
microseconds against a GPU signing time of milliseconds, so this adapter does without them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord
from lightfence.protocol.gpu_session import GpuLandmarkEndpoint

log = logging.getLogger("lightfence.landmark.gpu")


@dataclass(frozen=True)
class GpuSubmission:
    """A signed GPU round and the evidence it binds, as `POST /gpu-rounds` takes it."""

    record: GpuRoundRecord
    evidence: GpuEvidence

    def to_json_dict(self) -> dict[str, Any]:
        return {"record": self.record.to_json_dict(), "evidence": self.evidence.to_json_dict()}


class GpuLandmarkProtocol(asyncio.DatagramProtocol):
    def __init__(
        self,
        endpoint: GpuLandmarkEndpoint,
        on_record: Callable[[GpuRoundRecord, GpuEvidence], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.on_record = on_record
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.records: list[GpuRoundRecord] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        now = time.monotonic_ns()
        self.endpoint.receive_datagram(data, (str(addr[0]), int(addr[1])), now)
        self._flush()
        self._after_io()

    def _flush(self) -> None:
        assert self.transport is not None
        for out in self.endpoint.datagrams_to_send():
            before = time.monotonic_ns()  # read before the send: the RTT only grows
            self.transport.sendto(out.data, out.addr)
            if out.tag is not None:
                self.endpoint.on_sent(out.tag, before)

    def _after_io(self) -> None:
        while (event := self.endpoint.next_event()) is not None:
            issued = self.endpoint.issue_round(event.session_id, time.time_ns())
            if issued is not None:
                self.records.append(issued[0])
                if self.on_record is not None:
                    self.on_record(*issued)
        self._flush()
        deadline = self.endpoint.get_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            # loop.time() is time.monotonic(): the endpoint's clock
            self._timer = loop.call_at(deadline / 1e9, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.endpoint.handle_timer(time.monotonic_ns())
        self._flush()
        self._after_io()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


async def serve_gpu_rounds(
    endpoint: GpuLandmarkEndpoint,
    host: str,
    port: int,
    on_record: Callable[[GpuRoundRecord, GpuEvidence], None] | None = None,
) -> tuple[asyncio.DatagramTransport, GpuLandmarkProtocol]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: GpuLandmarkProtocol(endpoint, on_record), local_addr=(host, port)
    )
    log.info("GPU rounds for landmark %s on %s:%d", endpoint.landmark_id, host, port)
    return transport, proto
