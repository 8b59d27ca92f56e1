"""Kernel datagram timestamps (Linux SO_TIMESTAMPING, software TX and RX) with a fallback.

The kernel stamps a received datagram when the network stack takes it in, and a sent one when
the driver hands it to the device, so scheduling delays in this process drop out of the RTT.
TX stamps come back later on the socket's error queue, tagged with a per-socket send counter
(SOF_TIMESTAMPING_OPT_ID). Kernel stamps are CLOCK_REALTIME; each is handed on with the
CLOCK_MONOTONIC - CLOCK_REALTIME offset read when it was picked up, and the protocol core uses a
kernel pair only if that offset did not move between the two (no wall-clock step).

Where the OS gives no timestamps (not Linux, or the option is refused) the adapter falls back
to CLOCK_MONOTONIC read in user space, says so at start-up, and every record says which clock
timed its fastest round.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from lightfence.protocol.round_timing import KernelStamp

SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
"""Linux value (asm-generic); Python does not export the constant."""
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
TIMESTAMP_FLAGS = (
    SOF_TIMESTAMPING_TX_SOFTWARE
    | SOF_TIMESTAMPING_RX_SOFTWARE
    | SOF_TIMESTAMPING_SOFTWARE
    | SOF_TIMESTAMPING_OPT_ID
    | SOF_TIMESTAMPING_OPT_TSONLY
)
SO_EE_ORIGIN_TIMESTAMPING = 4
IP_RECVERR = 11
IPV6_RECVERR = 25
ANCILLARY_BUFSIZE = 512
_ERRQUEUE_FLAGS = int(socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
"""Plain int: OR-ing the socket module's flag enums costs microseconds on every drain."""
SCM_TIMESPEC = struct.Struct("qq")  # first timespec of struct scm_timestamping (software stamp)
SOCK_EXTENDED_ERR = struct.Struct("IBBBBII")  # struct sock_extended_err


def mono_minus_real_ns() -> int:
    """CLOCK_MONOTONIC - CLOCK_REALTIME now, read between two monotonic reads to bound error."""
    m1 = time.monotonic_ns()
    r = time.time_ns()
    m2 = time.monotonic_ns()
    return (m1 + m2) // 2 - r


def mono_minus_real_and_now_ns() -> tuple[int, int]:
    """(mono_minus_real_ns(), CLOCK_MONOTONIC read last): the landmark reads both just before
    each send, and one call with three clock reads is cheaper than two with four."""
    m1 = time.monotonic_ns()
    r = time.time_ns()
    m2 = time.monotonic_ns()
    return (m1 + m2) // 2 - r, m2


@dataclass
class Timestamper:
    """Timestamp handling for one UDP socket."""

    kernel: bool
    """True when SO_TIMESTAMPING software TX and RX is active on the socket."""
    reason: str
    """Why this source was chosen (shown at start-up)."""
    sends: int = 0
    """Datagrams sent so far: the kernel's OPT_ID of the next send."""

    @classmethod
    def enable(cls, sock: socket.socket, mode: str = "auto") -> Timestamper:
        """Turn on kernel timestamps per `mode` (auto, kernel, monotonic).

        `kernel` raises OSError when the OS refuses; `auto` falls back to monotonic and says so.
        """
        if mode == "monotonic":
            return cls(False, "monotonic clock (configured)")
        if not sys.platform.startswith("linux"):
            if mode == "kernel":
                raise OSError("kernel timestamps (SO_TIMESTAMPING) need Linux")
            return cls(False, f"monotonic clock fallback: no SO_TIMESTAMPING on {sys.platform}")
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TIMESTAMP_FLAGS)
        except OSError as exc:
            if mode == "kernel":
                raise
            return cls(False, f"monotonic clock fallback: SO_TIMESTAMPING refused ({exc})")
        return cls(True, "kernel timestamps (SO_TIMESTAMPING software TX and RX)")

    def resync(self, sock: socket.socket) -> None:
        """Restart the kernel's send counter (OPT_ID) at 0, e.g. after a failed send."""
        if not self.kernel:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, 0)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TIMESTAMP_FLAGS)
        except OSError:
            self.kernel = False
            self.reason = "monotonic clock fallback: SO_TIMESTAMPING lost after a send error"
        self.sends = 0

    def rx_kernel(self, ancdata: list[tuple[int, int, bytes]]) -> KernelStamp | None:
        """The receive stamp in ancillary data, with the clock offset now; None when absent."""
        if not self.kernel:
            return None
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= 16:
                sec, nsec = SCM_TIMESPEC.unpack_from(data)
                if sec or nsec:
                    return KernelStamp(int(sec * 1_000_000_000 + nsec), mono_minus_real_ns())
        return None

    def drain_tx(
        self, sock: socket.socket, read_stamps: Callable[[], list[tuple[int, int]]] | None = None
    ) -> list[tuple[int, KernelStamp]]:
        """Transmit stamps waiting on the error queue: (send id, stamp). `read_stamps` reads
        the raw (send id, CLOCK_REALTIME ns) pairs instead of one recvmsg each (batch_recv)."""
        if not self.kernel:
            return []
        found = read_stamps() if read_stamps is not None else self._read_tx_stamps(sock)
        if not found:
            return []
        # One offset read for the lot, after the last pick-up: every stamp here was taken
        # before it, which is all the RTT's step check needs (round_timing).
        offset = mono_minus_real_ns()
        return [(send_id, KernelStamp(stamp, offset)) for send_id, stamp in found]

    def _read_tx_stamps(self, sock: socket.socket) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        while True:
            try:
                _, anc, _, _ = sock.recvmsg(0, ANCILLARY_BUFSIZE, _ERRQUEUE_FLAGS)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                return out  # a queued ICMP error, say; nothing to time
            stamp = send_id = None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= 16:
                    sec, nsec = SCM_TIMESPEC.unpack_from(data)
                    stamp = sec * 1_000_000_000 + nsec
                elif kind in (IP_RECVERR, IPV6_RECVERR) and len(data) >= SOCK_EXTENDED_ERR.size:
                    err = SOCK_EXTENDED_ERR.unpack_from(data)
                    if err[1] == SO_EE_ORIGIN_TIMESTAMPING:
                        send_id = err[6]
            if stamp and send_id is not None:
                out.append((send_id, stamp))
