"""The protocol state machines, driven in memory with exact, scripted timing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightfence.crypto.keys import verify_signature
from lightfence.protocol import messages as m
from lightfence.protocol.agent_session import AgentState
from lightfence.protocol.challenge import challenge_signing_bytes
from lightfence.protocol.landmark_session import LandmarkConfig, LandmarkEndpoint
from lightfence.protocol.record import MAX_RTT_NS, TimestampSource, verify
from lightfence.protocol.wire import DecodeError
from session_harness import (
    AGENT_ADDR,
    DEVICE_KEY,
    LANDMARK_KEY,
    Wire,
    hello_with_cookie,
    make_pair,
    run_session,
    with_cookie,
)


def test_clean_session_issues_a_record_with_exact_rtts() -> None:
    lm, agent = make_pair(rounds=5)
    record, _ = run_session(lm, agent, Wire(one_way_ns=500_000, kernel_skew_ns=2_000))
    assert record is not None
    verify(record, LANDMARK_KEY.public_bytes, DEVICE_KEY.public_bytes)
    # kernel stamps sit 2 us inside each side of the user-space envelope
    assert record.rtts_ns == (996_000,) * 5
    assert record.timestamp_source is TimestampSource.KERNEL
    assert agent.state is AgentState.DONE and agent.record == record
    assert lm.active_sessions == 0
    assert lm.stats.records_issued == 1 and not lm.stats.rejected


def test_without_kernel_stamps_the_monotonic_fallback_is_used_and_reported() -> None:
    lm, agent = make_pair(rounds=3)
    record, _ = run_session(lm, agent, Wire(kernel_skew_ns=None))
    assert record is not None
    assert record.timestamp_source is TimestampSource.MONOTONIC
    assert record.rtts_ns == (1_000_000,) * 3
    assert lm.stats.records_monotonic_timed == 1


def test_kernel_stamps_outside_the_user_envelope_are_not_trusted() -> None:
    # A clock step could put a kernel stamp outside [pre-send, post-receive]: such a round
    # falls back to the user-space pair, which can only overstate the RTT.
    lm, agent = make_pair(rounds=2)
    record, _ = run_session(lm, agent, Wire(kernel_skew_ns=-5_000))
    assert record is not None
    assert record.timestamp_source is TimestampSource.MONOTONIC
    assert record.rtts_ns == (1_000_000,) * 2


def test_a_tx_stamp_from_after_the_send_call_is_never_used() -> None:
    # A kernel TX stamp matched to the wrong datagram (a later send) would shorten the RTT. A
    # stamp outside the send call cannot be this datagram's, so the round falls back to the
    # user-space pair, which can only overstate.
    lm, agent = make_pair(rounds=3)
    wire = Wire(kernel_skew_ns=2_000, send_call_ns=10_000, tx_stamp_delay_ns=9_000)
    record, _ = run_session(lm, agent, wire)
    assert record is not None
    assert record.timestamp_source is TimestampSource.MONOTONIC
    assert record.rtts_ns == (1_000_000,) * 3


@pytest.mark.parametrize("step_ns", [1_000, 50_000, 5_000_000])
def test_a_wall_clock_step_never_shortens_an_rtt(step_ns: int) -> None:
    # Kernel stamps are wall-clock time: a step back between TX and RX would shorten a kernel
    # RTT. A small step is absorbed (max of both differences), a large one is detected.
    lm, agent = make_pair(rounds=3)
    record, _ = run_session(lm, agent, Wire(kernel_skew_ns=2_000, clock_step_ns=step_ns))
    assert record is not None
    assert min(record.rtts_ns) >= 996_000
    large = step_ns > 2_000
    assert record.timestamp_source is (
        TimestampSource.MONOTONIC if large else TimestampSource.KERNEL
    )


def test_lost_answers_time_out_and_the_rest_are_kept() -> None:
    lm, agent = make_pair(rounds=5)
    record, _ = run_session(lm, agent, Wire(drop_answers={0, 3}))
    assert record is not None
    assert record.rounds_sent == 5 and len(record.rtts_ns) == 3
    assert lm.stats.rounds_lost == 2
    verify(record, LANDMARK_KEY.public_bytes, DEVICE_KEY.public_bytes)


def test_no_answers_means_no_record_and_a_reject() -> None:
    lm, agent = make_pair(rounds=3)
    record, _ = run_session(lm, agent, Wire(drop_answers={0, 1, 2}))
    assert record is None
    assert agent.state is AgentState.FAILED and "NO_VALID_ROUNDS" in (agent.error or "")
    assert lm.stats.sessions_without_record == 1


def test_forged_answers_are_never_measured() -> None:
    lm, agent = make_pair(rounds=4)
    # Replace every answer's signature with garbage before delivery: the session ends with no
    # valid round, so no record, whatever the timing.
    original = agent.key

    class Liar:
        public_bytes = original.public_bytes

        def sign(self, message: bytes) -> bytes:
            return bytes(64)

    agent.key = Liar()  # type: ignore[assignment]
    record, _ = run_session(lm, agent, Wire())
    assert record is None
    assert lm.stats.rejected["bad_signature"] == 4


def test_replayed_duplicate_stale_and_wrong_source_datagrams_are_counted() -> None:
    seen: list[bytes] = []

    def hook(lm: LandmarkEndpoint, answer: bytes, now: int) -> None:
        if seen:
            lm.receive_datagram(seen[-1], AGENT_ADDR, now)  # replay of the previous answer
        lm.receive_datagram(answer, ("127.0.0.1", 40001), now)  # same answer, other source
        resp = m.decode(answer)
        assert isinstance(resp, m.Response)
        future = m.Response(resp.session_id, resp.round_no + 1, resp.signature)
        if resp.round_no + 1 < 64:
            lm.receive_datagram(m.encode(future), AGENT_ADDR, now)
        seen.append(answer)

    lm, agent = make_pair(rounds=4)
    record, now = run_session(lm, agent, Wire(answer_hook=hook))
    assert record is not None and len(record.rtts_ns) == 4
    r = lm.stats.rejected
    assert r["duplicate_round"] == 3
    assert r["wrong_source"] == 4
    assert r["future_round"] == 4
    # after the record is issued the session is gone: a late replay is an unknown session
    lm.receive_datagram(seen[-1], AGENT_ADDR, now)
    assert lm.stats.rejected["unknown_session"] == 1


def test_a_stale_answer_after_timeout_is_rejected() -> None:
    late: list[bytes] = []

    def hook(lm: LandmarkEndpoint, answer: bytes, now: int) -> None:
        if late:
            lm.receive_datagram(late.pop(), AGENT_ADDR, now)

    lm, agent = make_pair(rounds=3)
    wire = Wire(drop_answers={0}, answer_hook=hook)
    original = agent.receive_datagram

    def capture(data: bytes) -> list[bytes]:
        out = original(data)
        if out and out[0][4 + 16] == 0:
            late.append(out[0])
        return out

    agent.receive_datagram = capture  # type: ignore[method-assign]
    record, _ = run_session(lm, agent, wire)
    assert record is not None and len(record.rtts_ns) == 2
    assert lm.stats.rejected["stale_round"] == 1


def test_record_fastest_round_is_signed_by_the_device() -> None:
    lm, agent = make_pair(rounds=6)
    record, _ = run_session(lm, agent)
    assert record is not None
    msg = challenge_signing_bytes(
        record.fastest_nonce, "fra1", record.device_id, record.session_id, record.fastest_round
    )
    assert verify_signature(DEVICE_KEY.public_bytes, record.device_signature, msg)


def test_agent_refuses_a_landmark_with_an_unexpected_key() -> None:
    lm, agent = make_pair(rounds=2)
    agent.landmark_public_key = DEVICE_KEY.public_bytes
    lm.receive_datagram(hello_with_cookie(lm, agent), AGENT_ADDR, 0)
    for out in lm.datagrams_to_send():
        agent.receive_datagram(out.data)
    assert agent.state is AgentState.FAILED
    assert "not the key in the landmarks file" in (agent.error or "")


def test_rate_limit_and_session_bound_hold() -> None:
    cfg = LandmarkConfig("fra1", max_sessions=5, hello_rate_per_s=1.0, hello_burst=3)
    lm, agent = make_pair(config=cfg)
    hello = agent.start()
    one_source = [("10.0.0.1", 1000 + i) for i in range(10)]
    many_sources = [(f"10.0.1.{i}", 1000) for i in range(10)]
    cookied = {addr: with_cookie(lm, hello, addr) for addr in one_source + many_sources}
    for addr in one_source:
        lm.receive_datagram(cookied[addr], addr, 0)
    assert lm.active_sessions == 3
    assert lm.stats.rejected["rate_limited"] == 7
    for addr in many_sources:
        lm.receive_datagram(cookied[addr], addr, 0)
    assert lm.active_sessions == 5
    assert lm.stats.rejected["busy"] == 8
    replies = [m.decode(o.data) for o in lm.datagrams_to_send()]
    assert sum(isinstance(r, m.Reject) for r in replies) == 15


def test_sessions_that_are_never_sent_expire() -> None:
    lm, agent = make_pair(rounds=3)
    lm.receive_datagram(hello_with_cookie(lm, agent), AGENT_ADDR, 0)
    lm.datagrams_to_send()  # dropped on the floor: no on_sent, no timer per round
    timer = lm.get_timer()
    assert timer is not None
    lm.handle_timer(timer)
    ev = lm.next_event()
    assert ev is not None
    assert lm.issue_record(ev.session_id, 0) is None
    assert lm.active_sessions == 0 and lm.stats.sessions_expired == 1


def test_issue_record_misuse_is_a_loud_local_error() -> None:
    lm, _ = make_pair()
    with pytest.raises(ValueError):
        lm.issue_record(b"x" * 16, 0)


junk = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=100).map(lambda b: b"LF\x02\x04" + b),
    st.binary(max_size=100).map(lambda b: b"LF\x02\x01" + b),
    st.binary(min_size=1300, max_size=1400),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(junk, max_size=20), st.data())
def test_noise_never_crashes_and_never_yields_an_unsigned_measurement(
    noise: list[bytes], data: st.DataObject
) -> None:
    """Garbage, mutated answers and forgeries injected mid-session: no exception escapes, and
    any record issued verifies against the real device key (so every measured round was
    answered by it)."""

    def hook(lm: LandmarkEndpoint, answer: bytes, now: int) -> None:
        for junk_dgram in noise[: data.draw(st.integers(0, len(noise)))]:
            lm.receive_datagram(junk_dgram, AGENT_ADDR, now - 1)
        raw = bytearray(answer)
        raw[data.draw(st.integers(4, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        if data.draw(st.booleans()):
            lm.receive_datagram(bytes(raw), AGENT_ADDR, now - 1)  # beats the real answer

    lm, agent = make_pair(rounds=4, seed=data.draw(st.integers(0, 1000)))
    record, _ = run_session(lm, agent, Wire(answer_hook=hook))
    if record is not None:
        verify(record, LANDMARK_KEY.public_bytes, DEVICE_KEY.public_bytes)
        assert all(rtt >= 996_000 - 1 for rtt in record.rtts_ns)
    assert lm.active_sessions == 0


def test_agent_ignores_noise() -> None:
    _, agent = make_pair()
    agent.start()
    for junk_dgram in (b"", b"LF\x02\x03" + bytes(49), b"\x00" * 70):
        assert agent.receive_datagram(junk_dgram) == []
    assert agent.state is AgentState.WAITING_SESSION
    assert sum(agent.rejected.values()) == 3


def test_fast_answer_path_matches_the_reference_encoding() -> None:
    lm, agent = make_pair(rounds=3)
    lm.receive_datagram(hello_with_cookie(lm, agent), AGENT_ADDR, 0)
    accept, challenge = (o.data for o in lm.datagrams_to_send())
    agent.receive_datagram(accept)
    (answer,) = agent.receive_datagram(challenge)
    ch = m.decode(challenge)
    assert isinstance(ch, m.Challenge)
    signed = challenge_signing_bytes(
        ch.nonce, "fra1", agent.identity.device_id, ch.session_id, ch.round_no
    )
    assert answer == m.encode(m.Response(ch.session_id, 0, DEVICE_KEY.sign(signed)))
    assert agent.receive_datagram(challenge) == []  # the same round again is not re-signed
    assert agent.rejected["bad_round"] == 1


def test_landmark_fast_paths_agree_with_the_message_codec() -> None:
    lm, agent = make_pair(rounds=3)
    lm.receive_datagram(hello_with_cookie(lm, agent), AGENT_ADDR, 0)
    _, challenge = (o.data for o in lm.datagrams_to_send())
    assert m.encode(m.decode(challenge)) == challenge
    sid = challenge[4:20]
    bad_round = b"LF\x02\x04" + sid + bytes([200]) + bytes(64)
    lm.receive_datagram(bad_round, AGENT_ADDR, 1)
    with pytest.raises(DecodeError):  # the codec refuses the same datagram
        m.decode(bad_round)
    assert lm.stats.rejected["malformed"] == 1


def test_a_hello_can_never_be_amplified() -> None:
    # Longest landmark id: before the cookie one RETRY, after it the SESSION and first
    # CHALLENGE, each time fewer bytes than the HELLO that asked.
    cfg = LandmarkConfig("L" * 255, max_rounds=64)
    lm, agent = make_pair(rounds=64, config=cfg)
    hello = agent.start()
    lm.receive_datagram(hello, AGENT_ADDR, 0)
    (retry,) = lm.datagrams_to_send()
    assert len(retry.data) <= len(hello) == m.HELLO_MIN_BYTES
    (second,) = agent.receive_datagram(retry.data)
    lm.receive_datagram(second, AGENT_ADDR, 0)
    replies = lm.datagrams_to_send()
    assert len(replies) == 2
    assert sum(len(o.data) for o in replies) <= len(second) == m.HELLO_MIN_BYTES
    lm.receive_datagram(hello[:-1], AGENT_ADDR, 0)  # unpadded
    lm.receive_datagram(hello[:-1] + b"\x01", AGENT_ADDR, 0)  # non-zero padding
    assert lm.stats.rejected["malformed"] == 2
    assert lm.datagrams_to_send() == []


class _ForgesSomeRounds:
    """A device key that answers the rounds in `forged` with signatures that do not verify."""

    def __init__(self, forged: set[int]) -> None:
        self.forged = forged
        self.public_bytes = DEVICE_KEY.public_bytes

    def sign(self, message: bytes) -> bytes:
        round_no = int.from_bytes(message[-4:], "big")
        return bytes(64) if round_no in self.forged else DEVICE_KEY.sign(message)


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]

    def counting(public_key: bytes, signature: bytes, message: bytes) -> bool:
        calls[0] += 1
        return verify_signature(public_key, signature, message)

    monkeypatch.setattr("lightfence.protocol.landmark_session.verify_signature", counting)
    return calls


@settings(max_examples=80, deadline=None)
@given(
    extra_us=st.lists(st.integers(0, 900), min_size=1, max_size=8),
    forged=st.sets(st.integers(0, 7)),
    check_every_round=st.booleans(),
)
def test_the_record_rtt_is_always_the_fastest_round_the_device_signed(
    extra_us: list[int], forged: set[int], check_every_round: bool
) -> None:
    rounds = len(extra_us)
    forged = {i for i in forged if i < rounds}
    cfg = LandmarkConfig("fra1", max_rounds=rounds, check_every_round=check_every_round)
    lm, agent = make_pair(rounds=rounds, config=cfg)
    agent.key = _ForgesSomeRounds(forged)  # type: ignore[assignment]
    wire = Wire(answer_extra_ns={i: us * 1_000 for i, us in enumerate(extra_us)})
    record, _ = run_session(lm, agent, wire)
    honest = [i for i in range(rounds) if i not in forged]
    if not honest:
        assert record is None
        return
    assert record is not None
    verify(record, LANDMARK_KEY.public_bytes, DEVICE_KEY.public_bytes)
    fastest_honest = min(extra_us[i] for i in honest)
    assert record.fastest_round not in forged
    assert extra_us[record.fastest_round] == fastest_honest
    # No listed RTT is shorter than the signed one, so no unchecked round can tighten a bound.
    assert all(rtt >= record.min_rtt_ns for rtt in record.rtts_ns)
    faster_forged = [i for i in forged if extra_us[i] < fastest_honest]
    if check_every_round:
        assert len(record.rtts_ns) == len(honest)
    else:
        assert len(record.rtts_ns) == rounds - len(faster_forged) - sum(
            1 for i in forged if extra_us[i] == fastest_honest and i < record.fastest_round
        )


def test_an_honest_session_costs_one_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_checks(monkeypatch)
    lm, agent = make_pair(rounds=10)
    record, _ = run_session(lm, agent, Wire(answer_extra_ns={3: 0, 5: 50_000, 7: 20_000}))
    assert record is not None and len(record.rtts_ns) == 10
    assert calls[0] == 1


def test_a_forged_faster_answer_is_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_checks(monkeypatch)
    lm, agent = make_pair(rounds=4)
    # Round 2 answered fastest, by someone without the device key.
    agent.key = _ForgesSomeRounds({2})  # type: ignore[assignment]
    slow = {0: 300_000, 1: 200_000, 3: 100_000}
    record, _ = run_session(lm, agent, Wire(answer_extra_ns=slow))
    assert record is not None
    assert record.fastest_round == 3 and len(record.rtts_ns) == 3
    assert lm.stats.rejected["bad_signature"] == 1
    assert calls[0] == 2


def test_a_round_answered_too_late_to_bound_anything_is_lost_not_raised() -> None:
    # Records refuse RTTs over MAX_RTT_NS; a landmark configured (or timed) past it must drop
    # the round rather than fail to issue the session's record.
    cfg = LandmarkConfig("fra1", max_rounds=3, round_timeout_ns=60 * 10**9)
    lm, agent = make_pair(rounds=3, config=cfg)
    record, _ = run_session(lm, agent, Wire(answer_extra_ns={1: MAX_RTT_NS}))
    assert record is not None
    assert len(record.rtts_ns) == 2 and max(record.rtts_ns) < MAX_RTT_NS
    assert lm.stats.rounds_lost == 1
