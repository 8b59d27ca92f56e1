"""The landmark's side of the protocol as a pure state machine (no sockets, no clocks).

The adapter feeds it datagrams with the time they arrived, sends what it asks to send and tells
it when each challenge left, and calls `handle_timer` at `get_timer()`. All times are integers
in one monotonic nanosecond domain chosen by the adapter. Each round keeps two timestamp pairs:
user-space (always given) and kernel (given when the OS timestamps datagrams). A round's RTT is
the kernel pair when it lies inside the user-space envelope, else the user-space pair. The
envelope: the kernel TX stamp falls within the send call (between the user's pre-send and
post-send times: a stamp of any other datagram on the socket cannot, as sends are sequential,
so a mismatched stamp is never used), and the kernel RX stamp is before the user's
post-receive time. Either way the RTT can only be longer than the wire's, never shorter: send
times are taken before the datagram leaves, receive times after it arrived.

Signatures are checked only when a session is finished (`issue_record`), off the timing path.
A datagram that is malformed, for another session, from the wrong source, for a stale, future
or duplicate round, is dropped and counted in `stats.rejected`; nothing from the network raises.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from lightfence.crypto.identity import TrustLevel
from lightfence.crypto.keys import SigningKey, key_id, verify_signature
from lightfence.protocol import messages as m
from lightfence.protocol.challenge import (
    CHALLENGE_DOMAIN,
    NONCE_LEN,
    SESSION_ID_LEN,
    challenge_middle,
)
from lightfence.protocol.record import MAX_ROUNDS, MeasurementRecord, TimestampSource
from lightfence.protocol.wire import DecodeError

Addr = tuple[str, int]
_RESPONSE_HEADER = m.header(m.MessageType.RESPONSE)
_CHALLENGE_HEADER = m.header(m.MessageType.CHALLENGE)
_ROUND_AT = m.HEADER_LEN + SESSION_ID_LEN
_SESSION_TIMER = -1
"""Round number used in the timer heap for a session's overall expiry."""
Rng = Callable[[int], bytes]


class Rejection(StrEnum):
    """Why a datagram (or a round) was dropped. Counted, never raised."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNEXPECTED_TYPE = "unexpected_type"
    UNKNOWN_SESSION = "unknown_session"
    WRONG_SOURCE = "wrong_source"
    STALE_ROUND = "stale_round"
    FUTURE_ROUND = "future_round"
    DUPLICATE_ROUND = "duplicate_round"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    BAD_SIGNATURE = "bad_signature"
    NO_TIMESTAMP = "no_timestamp"


@dataclass(frozen=True)
class LandmarkConfig:
    landmark_id: str
    max_rounds: int = 10
    """Rounds per session at most (the agent may ask for fewer)."""
    round_timeout_ns: int = 1_000_000_000
    """A challenge unanswered this long is lost; the next round starts."""
    max_sessions: int = 1024
    """Bound on concurrent sessions: memory stays bounded whatever arrives."""
    hello_rate_per_s: float = 20.0
    """Sessions a single source IP may open per second (token bucket)."""
    hello_burst: int = 40
    max_tracked_sources: int = 65536
    """Rate-limiter entries kept (least recently seen dropped first)."""


MAX_CLOCK_OFFSET_DRIFT_NS = 2_000
"""A kernel pair is used only if CLOCK_MONOTONIC - CLOCK_REALTIME moved less than this between
the two stamps' pick-up: more means the wall clock was stepped (or a read was preempted)."""


@dataclass(frozen=True)
class KernelStamp:
    """A kernel datagram timestamp (CLOCK_REALTIME) and the clock offset read when it was
    picked up, which puts it in the monotonic domain of every other time here."""

    real_ns: int
    mono_offset_ns: int
    """CLOCK_MONOTONIC - CLOCK_REALTIME, read by the adapter as it received the stamp."""

    @property
    def mono_ns(self) -> int:
        return self.real_ns + self.mono_offset_ns


@dataclass(frozen=True)
class TxTag:
    """Identifies a challenge datagram so the adapter can report when it left."""

    session_id: bytes
    round_no: int


@dataclass(frozen=True)
class Outgoing:
    data: bytes
    addr: Addr
    tag: TxTag | None = None
    """Set for challenges: report the send time with on_sent / on_tx_kernel."""


@dataclass(frozen=True)
class SessionFinished:
    """All rounds of a session are answered or lost: call issue_record (off the timed path)."""

    session_id: bytes


@dataclass
class LandmarkStats:
    datagrams_received: int = 0
    sessions_opened: int = 0
    records_issued: int = 0
    sessions_without_record: int = 0
    rounds_answered: int = 0
    rounds_lost: int = 0
    records_kernel_timed: int = 0
    records_monotonic_timed: int = 0
    sessions_expired: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass
class _Round:
    nonce: bytes
    tx_user_ns: int | None = None
    tx_user_after_ns: int | None = None
    tx_kernel: KernelStamp | None = None
    rx_user_ns: int | None = None
    rx_kernel: KernelStamp | None = None
    signature: bytes | None = None

    def rtt(self) -> tuple[int, TimestampSource] | None:
        if self.tx_user_ns is None or self.rx_user_ns is None:
            return None
        tk, rk, after = self.tx_kernel, self.rx_kernel, self.tx_user_after_ns
        if (
            tk is not None
            and rk is not None
            and after is not None
            and abs(rk.mono_offset_ns - tk.mono_offset_ns) <= MAX_CLOCK_OFFSET_DRIFT_NS
            and self.tx_user_ns <= tk.mono_ns <= after
            and tk.mono_ns < rk.mono_ns <= self.rx_user_ns
        ):
            # The larger of the wall-clock and monotonic-domain differences: a clock step
            # small enough to pass the drift check still cannot shorten the RTT.
            rtt = max(rk.real_ns - tk.real_ns, rk.mono_ns - tk.mono_ns)
            return rtt, TimestampSource.KERNEL
        if self.rx_user_ns > self.tx_user_ns:
            return self.rx_user_ns - self.tx_user_ns, TimestampSource.MONOTONIC
        return None


@dataclass
class _Session:
    session_id: bytes
    addr: Addr
    device_id: str
    device_public_key: bytes
    trust_level: TrustLevel
    rounds: int
    log: list[_Round] = field(default_factory=list)
    deadline_ns: int = 0
    finished: bool = False

    @property
    def current(self) -> int:
        return len(self.log) - 1


class LandmarkEndpoint:
    """All sessions of one landmark. Feed it datagrams; it says what to send and when."""

    def __init__(self, config: LandmarkConfig, key: SigningKey, rng: Rng = os.urandom) -> None:
        self.config = config
        self.key = key
        self.key_id = key.key_id
        self.stats = LandmarkStats()
        self._rng = rng
        self._sessions: dict[bytes, _Session] = {}
        self._timers: list[tuple[int, bytes, int]] = []
        self._out: list[Outgoing] = []
        self._events: deque[SessionFinished] = deque()
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._accepting = True

    def stop_accepting(self) -> None:
        """Refuse new sessions (BUSY) while those in flight finish: graceful shutdown."""
        self._accepting = False

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    # --- input ---------------------------------------------------------------------------

    def receive_datagram(
        self, data: bytes, addr: Addr, now_ns: int, kernel_rx: KernelStamp | None = None
    ) -> None:
        """A datagram arrived from `addr`; `now_ns` read just after the receive returned."""
        self.stats.datagrams_received += 1
        if len(data) == m.RESPONSE_LEN and data[: m.HEADER_LEN] == _RESPONSE_HEADER:
            # Fast path for the timed exchange: a response is fixed-size, so exact length and
            # header is a complete frame check; the fields are plain slices.
            round_no = data[_ROUND_AT]
            if round_no >= MAX_ROUNDS:
                self._reject(Rejection.MALFORMED)
                return
            sid = data[m.HEADER_LEN : _ROUND_AT]
            self._on_response(sid, round_no, data[_ROUND_AT + 1 :], addr, now_ns, kernel_rx)
            return
        if len(data) > m.MAX_DATAGRAM_BYTES:
            self._reject(Rejection.OVERSIZED)
            return
        try:
            msg = m.decode(data)
        except m.UnsupportedVersion:
            self._reject(Rejection.UNSUPPORTED_VERSION)
            return
        except DecodeError:
            self._reject(Rejection.MALFORMED)
            return
        if isinstance(msg, m.Response):  # only reached for responses the fast path did not take
            self._on_response(msg.session_id, msg.round_no, msg.signature, addr, now_ns, kernel_rx)
        elif isinstance(msg, m.Hello):
            self._on_hello(msg, addr, now_ns)
        else:
            self._reject(Rejection.UNEXPECTED_TYPE)

    def on_sent(self, tag: TxTag, user_ns: int, after_ns: int | None = None) -> None:
        """The challenge for `tag` was sent: `user_ns` read just before the send call and
        `after_ns` just after it returned (without it, kernel TX stamps are not used)."""
        rnd = self._round(tag)
        if rnd is not None and rnd.tx_user_ns is None:
            rnd.tx_user_ns = user_ns
            rnd.tx_user_after_ns = after_ns
            s = self._sessions[tag.session_id]
            self._arm(s, user_ns + self.config.round_timeout_ns)

    def on_tx_kernel(self, tag: TxTag, stamp: KernelStamp) -> None:
        """The kernel's transmit timestamp for `tag` (from the socket's error queue)."""
        rnd = self._round(tag)
        if rnd is not None and rnd.tx_kernel is None:
            rnd.tx_kernel = stamp

    def handle_timer(self, now_ns: int) -> None:
        """Time out unanswered rounds whose deadline has passed."""
        while self._timers and self._timers[0][0] <= now_ns:
            deadline, sid, round_no = heapq.heappop(self._timers)
            s = self._sessions.get(sid)
            if s is None or s.finished:
                continue
            if round_no == _SESSION_TIMER:
                # A session whose challenges were never reported sent (send failures) or that
                # outlived every round timeout ends here, so sessions cannot pile up.
                self.stats.sessions_expired += 1
                self._finish(s)
            elif s.current == round_no and s.deadline_ns == deadline:
                self.stats.rounds_lost += 1
                self._advance(s)
            # else: stale entry, the round was answered meanwhile

    # --- output --------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> SessionFinished | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    def issue_record(self, session_id: bytes, utc_ns: int) -> MeasurementRecord | None:
        """Check the finished session's signatures and queue its signed record (or a REJECT).

        `utc_ns` is the landmark's wall clock, written into the record as its time of issue.
        Returns the record, or None when no round was answered with a valid signature in time.
        """
        s = self._sessions.pop(session_id, None)
        if s is None or not s.finished:
            if s is not None:
                self._sessions[session_id] = s
            raise ValueError("issue_record is for a finished session, once")
        best: tuple[int, int, _Round, TimestampSource] | None = None
        rtts: list[int] = []
        middle = challenge_middle(self.config.landmark_id, s.device_id, s.session_id)
        for i, rnd in enumerate(s.log):
            if rnd.signature is None:
                continue
            msg = CHALLENGE_DOMAIN + rnd.nonce + middle + i.to_bytes(4, "big")
            if not verify_signature(s.device_public_key, rnd.signature, msg):
                self._reject(Rejection.BAD_SIGNATURE)
                continue
            timed = rnd.rtt()
            if timed is None:
                self._reject(Rejection.NO_TIMESTAMP)
                continue
            rtt, source = timed
            rtts.append(rtt)
            if best is None or rtt < best[0]:
                best = (rtt, i, rnd, source)
        if best is None:
            self.stats.sessions_without_record += 1
            reject = m.Reject(s.session_id, m.RejectCode.NO_VALID_ROUNDS, "no valid answer")
            self._out.append(Outgoing(m.encode(reject), s.addr))
            return None
        rtt, fastest, rnd, source = best
        assert rnd.signature is not None
        record = MeasurementRecord(
            landmark_id=self.config.landmark_id,
            landmark_key_id=self.key_id,
            device_id=s.device_id,
            device_key_id=key_id(s.device_public_key),
            trust_level=s.trust_level,
            session_id=s.session_id,
            rounds_sent=len(s.log),
            rtts_ns=tuple(rtts),
            fastest_round=fastest,
            fastest_nonce=rnd.nonce,
            device_signature=rnd.signature,
            timestamp_source=source,
            measured_at_unix_ns=utc_ns,
        ).signed_by(self.key)
        self.stats.records_issued += 1
        if source is TimestampSource.KERNEL:
            self.stats.records_kernel_timed += 1
        else:
            self.stats.records_monotonic_timed += 1
        self._out.append(
            Outgoing(m.encode(m.RecordMessage(s.session_id, record.to_bytes())), s.addr)
        )
        return record

    # --- internals -------------------------------------------------------------------------

    def _reject(self, why: Rejection) -> None:
        self.stats.rejected[why.value] += 1

    def _round(self, tag: TxTag) -> _Round | None:
        s = self._sessions.get(tag.session_id)
        if s is None or not 0 <= tag.round_no < len(s.log):
            return None
        return s.log[tag.round_no]

    def _allow_hello(self, host: str, now_ns: int) -> bool:
        cfg = self.config
        tokens, last = self._buckets.pop(host, (float(cfg.hello_burst), now_ns))
        tokens = min(float(cfg.hello_burst), tokens + (now_ns - last) * cfg.hello_rate_per_s / 1e9)
        allowed = tokens >= 1.0
        self._buckets[host] = (tokens - 1.0 if allowed else tokens, now_ns)
        while len(self._buckets) > cfg.max_tracked_sources:
            self._buckets.popitem(last=False)
        return allowed

    def _on_hello(self, hello: m.Hello, addr: Addr, now_ns: int) -> None:
        if not self._allow_hello(addr[0], now_ns):
            self._reject(Rejection.RATE_LIMITED)
            reply = m.Reject(hello.hello_id, m.RejectCode.RATE_LIMITED, "too many sessions")
            self._out.append(Outgoing(m.encode(reply), addr))
            return
        if len(self._sessions) >= self.config.max_sessions or not self._accepting:
            self._reject(Rejection.BUSY)
            why = "landmark busy" if self._accepting else "landmark shutting down"
            reply = m.Reject(hello.hello_id, m.RejectCode.BUSY, why)
            self._out.append(Outgoing(m.encode(reply), addr))
            return
        s = _Session(
            session_id=self._fresh_session_id(),
            addr=addr,
            device_id=hello.device_id,
            device_public_key=hello.device_public_key,
            trust_level=hello.trust_level,
            rounds=min(hello.rounds, self.config.max_rounds),
        )
        self._sessions[s.session_id] = s
        self.stats.sessions_opened += 1
        expiry_ns = now_ns + (s.rounds + 1) * self.config.round_timeout_ns
        heapq.heappush(self._timers, (expiry_ns, s.session_id, _SESSION_TIMER))
        accept = m.SessionAccept(
            hello.hello_id, s.session_id, self.config.landmark_id, self.key_id, s.rounds
        )
        self._out.append(Outgoing(m.encode(accept), addr))
        self._next_challenge(s)

    def _fresh_session_id(self) -> bytes:
        while True:
            sid = self._rng(SESSION_ID_LEN)
            if sid not in self._sessions:
                return sid

    def _next_challenge(self, s: _Session) -> None:
        rnd = _Round(nonce=self._rng(NONCE_LEN))
        s.log.append(rnd)
        round_no = len(s.log) - 1
        # Same bytes as m.encode(m.Challenge(...)) (tested), without building the message.
        data = _CHALLENGE_HEADER + s.session_id + bytes((round_no,)) + rnd.nonce
        self._out.append(Outgoing(data, s.addr, TxTag(s.session_id, round_no)))

    def _arm(self, s: _Session, deadline_ns: int) -> None:
        s.deadline_ns = deadline_ns
        heapq.heappush(self._timers, (deadline_ns, s.session_id, s.current))

    def _advance(self, s: _Session) -> None:
        if len(s.log) < s.rounds:
            self._next_challenge(s)
        else:
            self._finish(s)

    def _finish(self, s: _Session) -> None:
        s.finished = True
        self._events.append(SessionFinished(s.session_id))

    def _on_response(
        self,
        session_id: bytes,
        round_no: int,
        signature: bytes,
        addr: Addr,
        now_ns: int,
        kernel_rx: KernelStamp | None,
    ) -> None:
        s = self._sessions.get(session_id)
        if s is None:
            self._reject(Rejection.UNKNOWN_SESSION)
            return
        if addr != s.addr:
            self._reject(Rejection.WRONG_SOURCE)
            return
        if round_no > s.current:
            self._reject(Rejection.FUTURE_ROUND)
            return
        if round_no < s.current:
            answered = s.log[round_no].signature is not None
            self._reject(Rejection.DUPLICATE_ROUND if answered else Rejection.STALE_ROUND)
            return
        rnd = s.log[s.current]
        if rnd.signature is not None or s.finished:
            self._reject(Rejection.DUPLICATE_ROUND)
            return
        if rnd.tx_user_ns is None:
            # Answered before the adapter reported the send: it cannot be timed, so it is
            # not a measurement. (Only possible if the adapter misreports; counted, not raised.)
            self._reject(Rejection.NO_TIMESTAMP)
            return
        rnd.rx_user_ns = now_ns
        rnd.rx_kernel = kernel_rx
        rnd.signature = signature
        self.stats.rounds_answered += 1
        self._advance(s)
