"""The landmark's asyncio UDP adapter around protocol.landmark_session.LandmarkEndpoint.

The timed path, in full: on readability, receive what is waiting (with kernel timestamps on
Linux, a batch per `recvmmsg` call: landmark.batch_recv; otherwise one `recvmsg` each), read
the monotonic clock, hand each datagram (and its kernel stamp) to the endpoint; for each datagram
the endpoint wants sent, read the monotonic clock, `sendto`, report the send. Signature checks
and record signing run after the I/O batch; records go to a verifier in batches, from a worker
thread (landmark.submitter).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from lightfence.landmark.batch_recv import BatchReceiver
from lightfence.landmark.submitter import RecordSubmitter
from lightfence.landmark.timestamping import (
    ANCILLARY_BUFSIZE,
    Timestamper,
    mono_minus_real_and_now_ns,
    mono_minus_real_ns,
)
from lightfence.protocol import messages as m
from lightfence.protocol.landmark_session import LandmarkEndpoint, TxTag
from lightfence.protocol.record import MeasurementRecord
from lightfence.protocol.round_timing import KernelStamp

log = logging.getLogger("lightfence.landmark")

RECV_BATCH = 256
"""Datagrams read per wake-up before yielding to timers and record issuing."""
ISSUE_SLICE = 8
"""Records issued per callback (about 1 ms of checks and signing): between slices the loop
serves waiting datagrams, so sessions in flight never wait behind a crowd that just finished."""
SHUTDOWN_GRACE_S = 5.0
TX_ID_WRAP = 1 << 32


@dataclass
class ServerCounters:
    send_errors: int = 0
    receive_errors: int = 0


class LandmarkServer:
    """Serve one LandmarkEndpoint on one UDP socket."""

    def __init__(
        self,
        endpoint: LandmarkEndpoint,
        sock: socket.socket,
        timestamper: Timestamper,
        *,
        verifier_url: str | None = None,
        verifier_token: str | None = None,
        on_record: Callable[[MeasurementRecord], None] | None = None,
        batched: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.ts = timestamper
        self.submitter = (
            RecordSubmitter(verifier_url, verifier_token) if verifier_url is not None else None
        )
        self.on_record = on_record
        self.counters = ServerCounters()
        self._tx_tags: dict[int, TxTag] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_ns = 0
        self._issue_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Batches only with kernel stamps: with the monotonic fallback each datagram's own
        # clock read after its own receive keeps RTTs tighter.
        self._batch = (
            BatchReceiver.open(sock, m.MAX_DATAGRAM_BYTES + 1)
            if batched and timestamper.kernel
            else None
        )
        self._read_tx = self._batch.tx_stamps if self._batch is not None else None

    @classmethod
    def bind(
        cls,
        endpoint: LandmarkEndpoint,
        host: str,
        port: int,
        timestamps: str = "auto",
        *,
        verifier_url: str | None = None,
        verifier_token: str | None = None,
        on_record: Callable[[MeasurementRecord], None] | None = None,
        batched: bool = True,
    ) -> LandmarkServer:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((host, port))
            sock.setblocking(False)
            ts = Timestamper.enable(sock, timestamps)
        except OSError:
            sock.close()
            raise
        return cls(
            endpoint,
            sock,
            ts,
            verifier_url=verifier_url,
            verifier_token=verifier_token,
            on_record=on_record,
            batched=batched,
        )

    @property
    def receives_batched(self) -> bool:
        """Whether receives go through recvmmsg (batch_recv) rather than one recvmsg each."""
        return self._batch is not None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain sessions in flight (bounded) and close."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)
        log.info(
            "landmark %s on %s:%d, %s",
            self.endpoint.config.landmark_id,
            *self.address,
            self.ts.reason,
        )
        submitted = asyncio.Event()
        delivery = asyncio.create_task(self.submitter.run(submitted)) if self.submitter else None
        try:
            await stop.wait()
            self.endpoint.stop_accepting()
            deadline = time.monotonic() + SHUTDOWN_GRACE_S
            while self.endpoint.active_sessions and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            submitted.set()  # deliver what is left, then stop
            if delivery is not None:
                await asyncio.wait([delivery], timeout=SHUTDOWN_GRACE_S)
                if self.submitter is not None and self.submitter.pending:
                    log.warning(
                        "shutting down with %d records not delivered to the verifier",
                        self.submitter.pending,
                    )
        finally:
            if delivery is not None:
                delivery.cancel()
            self._loop.remove_reader(self.sock.fileno())
            if self._timer is not None:
                self._timer.cancel()
            self.sock.close()

    # --- the timed path ----------------------------------------------------------------------

    def _on_readable(self) -> None:
        if self._batch is not None:
            self._on_readable_batched(self._batch)
            return
        ep, sock = self.endpoint, self.sock
        for _ in range(RECV_BATCH):
            try:
                data, anc, _, addr = sock.recvmsg(m.MAX_DATAGRAM_BYTES + 1, ANCILLARY_BUFSIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.counters.receive_errors += 1
                break
            now = time.monotonic_ns()
            source = addr if len(addr) == 2 else (addr[0], addr[1])  # IPv6 has 4 fields
            ep.receive_datagram(data, source, now, self.ts.rx_kernel(anc))
            self._flush()
        self._drain_tx_stamps()
        self._after_io()

    def _on_readable_batched(self, batch: BatchReceiver) -> None:
        ep = self.endpoint
        for _ in range(RECV_BATCH // batch.slots):
            try:
                got = batch.datagrams()
            except OSError:
                self.counters.receive_errors += 1
                break
            # Read once the batch is in: after every datagram in it was received, which is all
            # the RTT needs (an RX time read later only lengthens it), and the clock offset at
            # pick-up, as rx_kernel reads it on the one-by-one path.
            now = time.monotonic_ns()
            offset = mono_minus_real_ns()
            for data, source, rx_real_ns in got:
                ep.receive_datagram(
                    data, source, now, KernelStamp(rx_real_ns, offset) if rx_real_ns else None
                )
                self._flush()
            if len(got) < batch.slots:
                break
        self._drain_tx_stamps()
        self._after_io()

    def _flush(self) -> None:
        ep, sock = self.endpoint, self.sock
        for out in ep.datagrams_to_send():
            if out.tag is not None and self.ts.kernel:
                self._tx_tags[self.ts.sends] = out.tag
            # `before` is read before the send: an RTT can only come out longer
            offset: int | None
            if self.ts.kernel:
                offset, before = mono_minus_real_and_now_ns()
            else:
                offset, before = None, time.monotonic_ns()
            try:
                sock.sendto(out.data, out.addr)
            except OSError:
                self.counters.send_errors += 1
                # The kernel may or may not have counted this send: restart the stamp ids so
                # later stamps match their datagrams again (the endpoint's envelope check
                # already keeps any mismatched stamp out of an RTT).
                self._tx_tags.clear()
                self.ts.resync(sock)
                continue
            after = time.monotonic_ns()
            self.ts.sends = (self.ts.sends + 1) % TX_ID_WRAP
            if out.tag is not None:
                ep.on_sent(out.tag, before, after, offset)

    def _drain_tx_stamps(self) -> None:
        # Always drain: every send is stamped (not just challenges), and an undrained error
        # queue both fills the receive buffer and keeps the socket signalling readable.
        for send_id, stamp in self.ts.drain_tx(self.sock, self._read_tx):
            tag = self._tx_tags.pop(send_id, None)
            if tag is not None:
                self.endpoint.on_tx_kernel(tag, stamp)
        if len(self._tx_tags) > 4 * self.endpoint.config.max_sessions:
            # Stamps the kernel never delivered: forget the oldest so memory stays bounded.
            for key in list(self._tx_tags)[: len(self._tx_tags) // 2]:
                del self._tx_tags[key]

    # --- off the timed path -------------------------------------------------------------------

    def _after_io(self) -> None:
        assert self._loop is not None
        if not self._issue_pending and self.endpoint.has_events:
            self._issue_pending = True
            self._loop.call_soon(self._issue_records)
        self._rearm_timer()

    def _rearm_timer(self) -> None:
        assert self._loop is not None
        deadline_ns = self.endpoint.get_timer()
        if deadline_ns is None or (self._timer is not None and self._timer_ns <= deadline_ns):
            return  # the armed timer fires first anyway; handle_timer then re-arms
        if self._timer is not None:
            self._timer.cancel()
        self._timer_ns = deadline_ns
        # loop.time() is time.monotonic(), the same clock as the endpoint's times
        self._timer = self._loop.call_at(deadline_ns / 1e9, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._drain_tx_stamps()
        self.endpoint.handle_timer(time.monotonic_ns())
        self._flush()
        self._after_io()

    def _issue_records(self) -> None:
        self._issue_pending = False
        self._drain_tx_stamps()
        issued = 0
        while issued < ISSUE_SLICE and (event := self.endpoint.next_event()) is not None:
            record = self.endpoint.issue_record(event.session_id, time.time_ns())
            issued += 1
            if record is not None:
                self._deliver(record)
        if issued:
            self._flush()
            self._after_io()  # more finished sessions wait their turn behind waiting datagrams

    def _deliver(self, record: MeasurementRecord) -> None:
        if self.on_record is not None:
            self.on_record(record)
        if self.submitter is not None:
            self.submitter.add(record)
