"""Drive a LandmarkEndpoint and AgentSession against each other in memory with a scripted clock.

No sockets and no real time: every timestamp is chosen by the test, so a run is exact and
repeatable. This is the sans-IO payoff; the real-socket path is tested in test_landmark_udp.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from lightfence.identity.device import software_identity
from lightfence.protocol import messages as m
from lightfence.protocol.agent_session import AgentSession
from lightfence.protocol.landmark_session import Addr, LandmarkConfig, LandmarkEndpoint
from lightfence.protocol.record import MeasurementRecord
from lightfence.protocol.round_timing import KernelStamp
from record_factory import seeded_key

LANDMARK_KEY = seeded_key("landmark")
DEVICE_KEY = seeded_key("device")
AGENT_ADDR: Addr = ("127.0.0.1", 40000)
UTC_NS = 1_764_000_000_000_000_000


def det_rng(seed: int = 1) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


@dataclass
class Wire:
    """The path between them: fixed one-way delay, optional per-round drops and kernel stamps."""

    one_way_ns: int = 500_000
    drop_answers: set[int] = field(default_factory=set)
    kernel_skew_ns: int | None = 2_000
    """Kernel stamps this far inside the user-space stamps; None: no kernel stamps."""
    send_call_ns: int = 10_000
    """How long the send call takes (user pre-send to post-send)."""
    clock_step_ns: int = 0
    """Wall clock stepped back by this between each challenge's TX and its answer's RX."""
    tx_stamp_delay_ns: int = 0
    """Extra delay of the kernel TX stamp (beyond the send call: a stamp not ours)."""
    answer_hook: Callable[[LandmarkEndpoint, bytes, int], None] | None = None
    """Called with each answer before delivery (to inject replays, forgeries...)."""
    answer_extra_ns: dict[int, int] = field(default_factory=dict)
    """Extra delay of the answer to round n (on top of one_way_ns), so rounds differ in RTT."""


def make_pair(
    rounds: int = 5, config: LandmarkConfig | None = None, seed: int = 1
) -> tuple[LandmarkEndpoint, AgentSession]:
    cfg = config or LandmarkConfig("fra1", max_rounds=rounds)
    lm = LandmarkEndpoint(cfg, LANDMARK_KEY, rng=det_rng(seed))
    agent = AgentSession(
        DEVICE_KEY,
        software_identity(DEVICE_KEY),
        cfg.landmark_id,
        LANDMARK_KEY.public_bytes,
        rounds,
        rng=det_rng(seed + 1000),
    )
    return lm, agent


def hello_with_cookie(
    lm: LandmarkEndpoint, agent: AgentSession, addr: Addr = AGENT_ADDR, now_ns: int = 0
) -> bytes:
    """Start `agent`, pass its first HELLO to `lm` and the RETRY back: the HELLO with the
    cookie, which opens a session when `lm` receives it from `addr` (not yet delivered)."""
    lm.receive_datagram(agent.start(), addr, now_ns)
    (retry,) = lm.datagrams_to_send()
    assert retry.addr == addr
    (hello,) = agent.receive_datagram(retry.data)
    return hello


def with_cookie(lm: LandmarkEndpoint, hello: bytes, addr: Addr, now_ns: int = 0) -> bytes:
    """`hello` (a first HELLO's bytes) again with the cookie `lm` gives `addr` for it."""
    lm.receive_datagram(hello, addr, now_ns)
    (retry,) = lm.datagrams_to_send()
    msg, first = m.decode(retry.data), m.decode(hello)
    assert isinstance(msg, m.Retry) and isinstance(first, m.Hello)
    return m.encode(replace(first, cookie=msg.cookie))


def run_session(
    lm: LandmarkEndpoint, agent: AgentSession, wire: Wire | None = None, now_ns: int = 10**9
) -> tuple[MeasurementRecord | None, int]:
    """Run one session to its end; return the issued record (or None) and the final clock."""
    w = wire or Wire()
    now = now_ns
    hello = hello_with_cookie(lm, agent, AGENT_ADDR, now)
    now += 2 * w.one_way_ns
    lm.receive_datagram(hello, AGENT_ADDR, now)
    issued: MeasurementRecord | None = None
    pending: deque[bytes] = deque()
    for _ in range(10_000):
        outs = lm.datagrams_to_send()
        for out in outs:
            if out.tag is not None:
                lm.on_sent(out.tag, now, now + w.send_call_ns, 0)
                if w.kernel_skew_ns is not None:
                    tx_real = now + w.kernel_skew_ns + w.tx_stamp_delay_ns
                    lm.on_tx_kernel(out.tag, KernelStamp(tx_real, 0))
            now += w.one_way_ns
            pending.extend(agent.receive_datagram(out.data))
        while pending:
            answer = pending.popleft()
            round_no = answer[4 + 16]
            if round_no in w.drop_answers:
                continue
            now += w.one_way_ns + w.answer_extra_ns.get(round_no, 0)
            if w.answer_hook is not None:
                w.answer_hook(lm, answer, now)
            kernel = (
                None
                if w.kernel_skew_ns is None
                else KernelStamp(now - w.kernel_skew_ns - w.clock_step_ns, w.clock_step_ns)
            )
            lm.receive_datagram(answer, AGENT_ADDR, now, kernel)
        event = lm.next_event()
        if event is not None:
            issued = lm.issue_record(event.session_id, UTC_NS)
            for out in lm.datagrams_to_send():
                agent.receive_datagram(out.data)
            return issued, now
        timer = lm.get_timer()
        if not outs and timer is not None:
            now = max(now, timer)
            lm.handle_timer(now)
    raise AssertionError("session did not finish")
