"""The RTT of one round from the timestamps the adapter reported: the soundness-critical step.

Each round has a user-space pair (CLOCK_MONOTONIC read before the send call and after the
receive call returned: always there) and, where the OS gives them, a kernel pair (datagram
timestamps, CLOCK_REALTIME, each with the CLOCK_MONOTONIC - CLOCK_REALTIME offset read when it
was picked up). The kernel pair is tighter; it is used only when it provably belongs to this
round and no wall-clock step happened in between:

* the kernel TX stamp lies within the send call (after the pre-send read, before the
  post-send read): sends are sequential, so no other datagram's stamp can;
* the kernel RX stamp lies before the post-receive read and after the TX stamp;
* the clock offset read before the send and at both pick-ups agrees within 2 us;
* and the RTT is the larger of the wall-clock and monotonic-domain differences, plus the
  offset drift seen (a step within the tolerance can shorten the RTT by no more than that).

Otherwise the user-space pair is used. Either way the result is never shorter than the time
the signal spent between leaving and coming back (tests/test_round_timing.py checks this for
any timing and any single clock step); it can only be longer, which weakens a record, never
falsifies it. Not covered: a step made and undone inside one round, which needs root on the
landmark (landmarks are trusted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from lightfence.protocol.record import TimestampSource

MAX_CLOCK_OFFSET_DRIFT_NS = 2_000
"""Largest change of CLOCK_MONOTONIC - CLOCK_REALTIME tolerated within a round (read jitter)."""


class KernelStamp(NamedTuple):
    """A kernel datagram timestamp (CLOCK_REALTIME) and the clock offset read when it was
    picked up, which puts it in the monotonic domain of every other time here. (A NamedTuple:
    two are made for every round on the landmark's timed path, and tuples build fastest.)"""

    real_ns: int
    mono_offset_ns: int
    """CLOCK_MONOTONIC - CLOCK_REALTIME, read by the adapter as it received the stamp."""

    @property
    def mono_ns(self) -> int:
        return self.real_ns + self.mono_offset_ns


@dataclass(slots=True)
class RoundTimes:
    """Everything the adapter reported about when one round's datagrams moved."""

    tx_user_ns: int | None = None
    """CLOCK_MONOTONIC just before the challenge's send call."""
    tx_user_after_ns: int | None = None
    """CLOCK_MONOTONIC just after the send call returned."""
    tx_clock_offset_ns: int | None = None
    """CLOCK_MONOTONIC - CLOCK_REALTIME read before the send call."""
    tx_kernel: KernelStamp | None = None
    rx_user_ns: int | None = None
    """CLOCK_MONOTONIC just after the receive call returned the answer."""
    rx_kernel: KernelStamp | None = None

    def kernel_rtt_ns(self) -> int | None:
        """The kernel pair's RTT if every check holds, else None."""
        tk, rk = self.tx_kernel, self.rx_kernel
        before, after, rx_user = self.tx_user_ns, self.tx_user_after_ns, self.rx_user_ns
        offset = self.tx_clock_offset_ns
        if tk is None or rk is None or before is None or after is None or rx_user is None:
            return None
        if offset is None:
            return None
        tx_real, tx_offset = tk
        rx_real, rx_offset = rk
        drift = max(offset, tx_offset, rx_offset) - min(offset, tx_offset, rx_offset)
        if drift > MAX_CLOCK_OFFSET_DRIFT_NS:
            return None
        tx_mono, rx_mono = tx_real + tx_offset, rx_real + rx_offset
        if not (before <= tx_mono <= after and tx_mono < rx_mono <= rx_user):
            return None
        # A step small enough to pass shows up in `drift` and can shorten either difference by
        # at most that much: adding it back keeps the RTT an upper bound.
        return max(rx_real - tx_real, rx_mono - tx_mono) + drift

    def rtt(self) -> tuple[int, TimestampSource] | None:
        """(RTT in ns, the clock that timed it), or None if the round cannot be timed."""
        kernel = self.kernel_rtt_ns()
        if kernel is not None:
            return kernel, TimestampSource.KERNEL
        if self.tx_user_ns is None or self.rx_user_ns is None:
            return None
        if self.rx_user_ns > self.tx_user_ns:
            return self.rx_user_ns - self.tx_user_ns, TimestampSource.MONOTONIC
        return None
