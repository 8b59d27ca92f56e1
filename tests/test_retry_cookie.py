"""The retry cookie: no state and no amplification before a peer proves its address (issue 17)."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import replace

from lightfence.agent.measure import RetryPolicy, measure_landmark
from lightfence.protocol import cookie as c
from lightfence.protocol import messages as m
from lightfence.protocol.agent_session import MAX_RETRIES, AgentState
from lightfence.protocol.landmark_session import LandmarkConfig, LandmarkEndpoint
from lightfence.protocol.record import verify
from session_harness import (
    AGENT_ADDR,
    DEVICE_KEY,
    LANDMARK_KEY,
    Wire,
    det_rng,
    make_pair,
    run_session,
    with_cookie,
)
from test_landmark_udp import IDENTITY, landmark

S = 1_000_000_000


def test_no_session_state_and_one_short_reply_before_the_cookie() -> None:
    lm, agent = make_pair(rounds=64, config=LandmarkConfig("L" * 255, max_rounds=64))
    hello = agent.start()
    for i in range(500):
        lm.receive_datagram(hello, (f"10.{i // 250}.{i % 250}.1", 1000 + i), i)
    replies = lm.datagrams_to_send()
    assert len(replies) == 500
    assert all(len(o.data) <= len(hello) for o in replies)
    assert max(len(o.data) for o in replies) / len(hello) < 0.1
    assert all(isinstance(m.decode(o.data), m.Retry) for o in replies)
    # Nothing per session or per source: no sessions, no timers, no rate-limiter entries.
    assert lm.active_sessions == 0 and lm.get_timer() is None
    assert len(lm._hellos) == 0
    assert lm.stats.retries_sent == 500 and lm.stats.sessions_opened == 0


def test_honest_agent_completes_through_the_retry() -> None:
    lm, agent = make_pair(rounds=5)
    record, _ = run_session(lm, agent)
    assert record is not None and agent.state is AgentState.DONE
    verify(record, LANDMARK_KEY.public_bytes, DEVICE_KEY.public_bytes)
    assert agent.retries == 1 and lm.stats.retries_sent == 1
    assert not lm.stats.rejected


def _cookie_of(lm: LandmarkEndpoint, hello: bytes, addr: tuple[str, int], now: int) -> m.Hello:
    msg = m.decode(with_cookie(lm, hello, addr, now))
    assert isinstance(msg, m.Hello)
    return msg


def _refused(lm: LandmarkEndpoint, hello: m.Hello, addr: tuple[str, int], now: int) -> bool:
    """Whether `hello` was refused: no session, and a fresh RETRY (only) in its place."""
    before = lm.stats.sessions_opened
    lm.receive_datagram(m.encode(hello), addr, now)
    (reply,) = lm.datagrams_to_send()
    return lm.stats.sessions_opened == before and isinstance(m.decode(reply.data), m.Retry)


def test_wrong_expired_and_other_address_cookies_are_rejected_and_counted() -> None:
    lm, agent = make_pair()
    first = agent.start()
    good = _cookie_of(lm, first, AGENT_ADDR, 0)
    flipped = bytearray(good.cookie)
    flipped[-1] ^= 1
    assert _refused(lm, replace(good, cookie=bytes(flipped)), AGENT_ADDR, S)
    assert _refused(lm, replace(good, cookie=good.cookie[:-1]), AGENT_ADDR, S)
    assert _refused(lm, good, ("127.0.0.9", AGENT_ADDR[1]), S)  # another address
    assert _refused(lm, good, (AGENT_ADDR[0], AGENT_ADDR[1] + 1), S)  # another port
    assert _refused(lm, replace(good, rounds=good.rounds - 1), AGENT_ADDR, S)  # other fields
    assert _refused(lm, replace(good, hello_id=b"x" * 8), AGENT_ADDR, S)
    future = (int.from_bytes(good.cookie[:4], "big") + 5).to_bytes(4, "big")
    assert _refused(lm, replace(good, cookie=future + good.cookie[4:]), AGENT_ADDR, S)
    assert lm.stats.rejected["bad_cookie"] == 7
    assert _refused(lm, good, AGENT_ADDR, (c.LIFETIME_S + 2) * S)  # expired
    assert lm.stats.rejected["expired_cookie"] == 1
    assert lm.active_sessions == 0
    # The genuine cookie, in time, from its own address and port, opens the session.
    lm.receive_datagram(m.encode(good), AGENT_ADDR, c.LIFETIME_S * S)
    assert lm.active_sessions == 1


def test_a_cookie_from_another_landmark_or_an_old_secret_is_rejected() -> None:
    lm, agent = make_pair()
    other = LandmarkEndpoint(LandmarkConfig("fra1"), LANDMARK_KEY, rng=det_rng(99))
    first = agent.start()
    assert _refused(lm, _cookie_of(other, first, AGENT_ADDR, 0), AGENT_ADDR, 0)
    # Issued just before a secret rotation: still good after it (the previous secret is kept).
    t = (c.ROTATE_S - 1) * S
    lm.receive_datagram(m.encode(_cookie_of(lm, first, AGENT_ADDR, t)), AGENT_ADDR, t + 2 * S)
    assert lm.active_sessions == 1
    lm.datagrams_to_send()
    # Two rotations later its secret is gone.
    old = _cookie_of(lm, first, ("127.0.0.5", 1), t)
    lm._cookies.issue(AGENT_ADDR, b"", (3 * c.ROTATE_S + 1) * S)  # time moves on
    assert _refused(lm, old, ("127.0.0.5", 1), (3 * c.ROTATE_S + 1) * S)


def test_a_silent_peer_never_receives_more_than_it_sent() -> None:
    # Longest landmark id, most rounds: the peer proves its address, then answers nothing.
    cfg = LandmarkConfig("L" * 255, max_rounds=64)
    lm, agent = make_pair(rounds=64, config=cfg)
    first = agent.start()
    lm.receive_datagram(first, AGENT_ADDR, 0)
    (retry,) = lm.datagrams_to_send()
    (second,) = agent.receive_datagram(retry.data)
    sent_in, sent_out = len(first) + len(second), len(retry.data)
    lm.receive_datagram(second, AGENT_ADDR, 0)
    now = 0
    while lm.active_sessions:
        for out in lm.datagrams_to_send():
            sent_out += len(out.data)
            if out.tag is not None:
                lm.on_sent(out.tag, now, now, 0)
        timer = lm.get_timer()
        if timer is None:
            event = lm.next_event()
            assert event is not None
            assert lm.issue_record(event.session_id, 0) is None
            continue
        now = max(now, timer)
        lm.handle_timer(now)
    sent_out += sum(len(o.data) for o in lm.datagrams_to_send())
    assert sent_out <= sent_in
    assert lm.stats.silent_sessions_ended == 1


def test_a_lossy_but_live_peer_still_gets_its_rounds() -> None:
    lm, agent = make_pair(rounds=6)
    record, _ = run_session(lm, agent, Wire(drop_answers={0, 2}))
    assert record is not None and record.rounds_sent == 6 and len(record.rtts_ns) == 4


def test_a_version_1_hello_gets_a_short_version_1_reject() -> None:
    lm, agent = make_pair()
    v1 = bytearray(agent.start())
    v1[2] = 1
    lm.receive_datagram(bytes(v1), AGENT_ADDR, 0)
    (reply,) = lm.datagrams_to_send()
    assert len(reply.data) <= len(v1)
    assert reply.data[:4] == b"LF\x01\x06" and reply.data[5:13] == v1[4:12]
    assert m.VERSION_REJECT_DETAIL.encode() in reply.data
    lm.receive_datagram(bytes(v1[:100]), AGENT_ADDR, 0)  # too short for a HELLO: no answer
    assert lm.datagrams_to_send() == []
    assert lm.stats.rejected["unsupported_version"] == 2 and lm.active_sessions == 0


def test_the_agent_answers_only_its_own_retries_and_only_a_few() -> None:
    _, agent = make_pair()
    hello = m.decode(agent.start())
    assert isinstance(hello, m.Hello)
    assert agent.receive_datagram(m.encode(m.Retry(b"y" * 8, b"c"))) == []
    assert agent.rejected["unexpected_retry"] == 1
    for i in range(MAX_RETRIES):
        (again,) = agent.receive_datagram(m.encode(m.Retry(hello.hello_id, bytes([i + 1]))))
        assert m.decode(again) == replace(hello, cookie=bytes([i + 1]))
    assert agent.receive_datagram(m.encode(m.Retry(hello.hello_id, b"z"))) == []
    assert agent.state is AgentState.FAILED and "cookie" in (agent.error or "")


def test_an_honest_agent_completes_during_a_spoofed_flood() -> None:
    """Small and fast: 8 flooding sources send cookieless and forged-cookie HELLOs at a
    landmark bounded to 4 sessions while an agent measures it over real UDP."""
    key = LANDMARK_KEY
    stop = threading.Event()

    def flood(port: int) -> None:
        socks = []
        for i in range(8):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.0.{i + 2}", 0))
            socks.append(s)
        _, agent = make_pair()
        hello = m.decode(agent.start())
        assert isinstance(hello, m.Hello)
        forged = m.encode(replace(hello, cookie=bytes(c.COOKIE_LEN)))
        plain = m.encode(hello)
        n = 0
        while not stop.is_set():
            for s in socks:
                s.sendto(forged if n % 2 else plain, ("127.0.0.1", port))
            n += 1
            if n % 10 == 0:  # about 20,000 HELLOs/s at most; the GIL is shared with the landmark
                stop.wait(0.004)
        for s in socks:
            s.close()

    async def main() -> None:
        async with landmark("f", key, max_sessions=4) as (server, entry):
            t = threading.Thread(target=flood, args=(server.address[1],), daemon=True)
            t.start()
            try:
                await asyncio.sleep(0.2)
                retry = RetryPolicy(attempts=3, attempt_timeout_s=5.0, backoff_s=0.05)
                results = await asyncio.gather(
                    *(measure_landmark(entry, DEVICE_KEY, IDENTITY, 5, retry) for _ in range(3))
                )
            finally:
                stop.set()
                t.join(5)
            for r in results:
                assert r.record is not None, r.error
            stats = server.endpoint.stats
            assert stats.rejected["busy"] == 0 and stats.rejected["rate_limited"] == 0
            assert stats.rejected["bad_cookie"] > 0 and stats.retries_sent > 3

    asyncio.run(main())
