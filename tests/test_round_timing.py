"""THE invariant on the timing side: a round's RTT is never shorter than the signal's real
round trip, for any timing, a kernel stamp that belongs to another datagram, or a wall-clock
step anywhere in the round."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lightfence.protocol.record import TimestampSource
from lightfence.protocol.round_timing import KernelStamp, RoundTimes

US = 1_000
delays = st.integers(0, 2_000 * US)


def offset_at(t: int, step_at: int, before: int, after: int) -> int:
    """CLOCK_MONOTONIC - CLOCK_REALTIME at monotonic time t, with one step at step_at."""
    return before if t < step_at else after


@given(
    send_call=st.integers(0, 500 * US),
    queued=delays,
    true_rtt=st.integers(1, 50_000 * US),
    rx_stack=delays,
    rx_wait=delays,
    tx_pickup=st.integers(0, 20_000 * US),
    step=st.integers(-10_000 * US, 10_000 * US),
    step_at=st.integers(-5_000 * US, 80_000 * US),
    stamp_is_ours=st.booleans(),
    foreign_stamp=st.integers(-5_000 * US, 60_000 * US),
)
def test_rtt_is_never_shorter_than_the_real_round_trip(
    send_call: int,
    queued: int,
    true_rtt: int,
    rx_stack: int,
    rx_wait: int,
    tx_pickup: int,
    step: int,
    step_at: int,
    stamp_is_ours: bool,
    foreign_stamp: int,
) -> None:
    t0 = 0  # monotonic time just before the send call
    base = 10**18

    def off(t: int) -> int:
        return offset_at(t, step_at, base, base + step)

    wire_tx = t0 + queued  # the datagram leaves some time after the send call began
    if stamp_is_ours:
        t_txs = wire_tx  # the driver stamps it as it goes
    else:
        # A stamp of another send on the socket (sends are sequential: outside our call),
        # with no clock step (a step on top of a mismatch is bounded by the send call).
        t_txs = foreign_stamp if not 0 <= foreign_stamp <= send_call else send_call + 1
        step = 0
    wire_rx = wire_tx + true_rtt
    t_rxs = wire_rx + rx_stack
    rx_user = t_rxs + rx_wait
    times = RoundTimes(
        tx_user_ns=t0,
        tx_user_after_ns=t0 + send_call,
        tx_clock_offset_ns=off(t0),
        tx_kernel=KernelStamp(t_txs - off(t_txs), off(t_txs + tx_pickup)),
        rx_user_ns=rx_user,
        rx_kernel=KernelStamp(t_rxs - off(t_rxs), off(rx_user)),
    )
    timed = times.rtt()
    assert timed is not None
    rtt, source = timed
    assert rtt >= true_rtt
    if source is TimestampSource.MONOTONIC:
        assert rtt == rx_user - t0


def test_clean_kernel_pair_is_used_and_exact() -> None:
    times = RoundTimes(
        0, 10 * US, 7, KernelStamp(2 * US - 7, 7), 100 * US, KernelStamp(90 * US - 7, 7)
    )
    assert times.rtt() == (88 * US, TimestampSource.KERNEL)


def test_missing_stamps_fall_back_or_fail() -> None:
    assert RoundTimes(0, 10, None, None, 50, None).rtt() == (50, TimestampSource.MONOTONIC)
    assert RoundTimes(None, None, None, None, 50, None).rtt() is None
    assert RoundTimes(0, 10, 0, None, None, None).rtt() is None
