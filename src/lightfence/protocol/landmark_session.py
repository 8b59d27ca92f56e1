"""The landmark's side of the protocol as a pure state machine (no sockets, no clocks).

The adapter feeds it datagrams with the time they arrived, sends what it asks to send and tells
it when each challenge left, and calls `handle_timer` at `get_timer()`. All times are integers
in one monotonic nanosecond domain chosen by the adapter; how a round's RTT is made from them
(and why it is never shorter than the signal's real round trip) is protocol.round_timing.

A HELLO opens a session only with a valid retry cookie (protocol.cookie): before that the
landmark keeps nothing and answers with one RETRY, shorter than the HELLO. A session whose peer
answers nothing ends when one more challenge would send it more bytes than it sent.

Signatures are checked only when a session is finished (`issue_record`), off the timing path.
A datagram that is malformed, for another session, from the wrong source, for a stale, future
or duplicate round, is dropped and counted in `stats.rejected`; nothing from the network raises.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from lightfence.crypto.keys import SigningKey, key_id, verify_signature
from lightfence.crypto.nonces import NonceSource
from lightfence.model.trust import TrustLevel
from lightfence.protocol import messages as m
from lightfence.protocol.challenge import (
    CHALLENGE_DOMAIN,
    NONCE_LEN,
    SESSION_ID_LEN,
    challenge_middle,
)
from lightfence.protocol.cookie import CookieCheck, RetryCookies
from lightfence.protocol.landmark_types import (
    Addr,
    LandmarkConfig,
    LandmarkStats,
    Rejection,
    SessionFinished,
)
from lightfence.protocol.rate_limit import SourceRateLimiter
from lightfence.protocol.record import MAX_ROUNDS, MAX_RTT_NS, MeasurementRecord, TimestampSource
from lightfence.protocol.round_timing import KernelStamp, RoundTimes
from lightfence.protocol.wire import DecodeError

__all__ = [
    "Addr",
    "KernelStamp",
    "LandmarkConfig",
    "LandmarkEndpoint",
    "LandmarkStats",
    "Outgoing",
    "Rejection",
    "SessionFinished",
    "TxTag",
]

_RESPONSE_HEADER = m.header(m.MessageType.RESPONSE)
_CHALLENGE_HEADER = m.header(m.MessageType.CHALLENGE)
_ROUND_AT = m.HEADER_LEN + SESSION_ID_LEN
_SESSION_TIMER = -1
"""Kind of a timer-heap entry for a session's overall expiry."""
_ROUND_TIMER = 0
"""Kind of a timer-heap entry for the current round's deadline."""
_ROUND_BYTES = [bytes((i,)) for i in range(MAX_ROUNDS)]
Rng = Callable[[int], bytes]


@dataclass(slots=True, eq=False)
class _Round(RoundTimes):
    nonce: bytes = b""
    signature: bytes | None = None


@dataclass(slots=True, eq=False)
class _Session:
    session_id: bytes
    addr: Addr
    device_id: str
    device_public_key: bytes
    trust_level: TrustLevel
    rounds: int
    challenge_prefix: bytes
    """Header and session id: the start of every challenge of this session."""
    hello_bytes: int = 0
    """Size of the HELLO that opened it: with the answers, what the peer has sent."""
    accept_bytes: int = 0
    log: list[_Round] = field(default_factory=list)
    current: int = -1
    """Number of the round in progress (the last in `log`)."""
    deadline_ns: int = 0
    """Deadline of round `deadline_round` (the current one, once its challenge left)."""
    deadline_round: int = -1
    round_timer_queued: bool = False
    """A round-timer entry of this session is in the heap (at most one: see _arm)."""
    finished: bool = False


class TxTag(NamedTuple):
    """Names one challenge, for the adapter to report when it left (on_sent, on_tx_kernel).
    Opaque to the adapter. It holds the round itself, so a report costs no lookups; a report
    that comes after the session ended changes nothing that is still read."""

    session: _Session
    round: _Round


class Outgoing(NamedTuple):
    """A datagram for the adapter to send. (TxTag and Outgoing are NamedTuples: one of each is
    made for every challenge on the timed path, and tuples build fastest.)"""

    data: bytes
    addr: Addr
    tag: TxTag | None = None
    """Set for challenges: report the send time with on_sent / on_tx_kernel."""


class LandmarkEndpoint:
    """All sessions of one landmark. Feed it datagrams; it says what to send and when."""

    def __init__(self, config: LandmarkConfig, key: SigningKey, rng: Rng | None = None) -> None:
        self.config = config
        self.key = key
        self.key_id = key.key_id
        self.stats = LandmarkStats()
        self._rng = rng or NonceSource()
        self._round_timeout_ns = config.round_timeout_ns
        self._sessions: dict[bytes, _Session] = {}
        self._timers: list[tuple[int, bytes, int]] = []
        self._out: list[Outgoing] = []
        self._events: deque[SessionFinished] = deque()
        self._hellos = SourceRateLimiter(
            config.hello_rate_per_s, config.hello_burst, config.max_tracked_sources
        )
        self._cookies = RetryCookies(self._rng)
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
            reply = m.encode_version_reject(data)
            if reply is not None:  # an agent of version 1: tell it, in fewer bytes than it sent
                self._out.append(Outgoing(reply, addr))
            return
        except DecodeError:
            self._reject(Rejection.MALFORMED)
            return
        if isinstance(msg, m.Response):  # only reached for responses the fast path did not take
            self._on_response(msg.session_id, msg.round_no, msg.signature, addr, now_ns, kernel_rx)
        elif isinstance(msg, m.Hello):
            self._on_hello(msg, len(data), addr, now_ns)
        else:
            self._reject(Rejection.UNEXPECTED_TYPE)

    def on_sent(
        self,
        tag: TxTag,
        user_ns: int,
        after_ns: int | None = None,
        clock_offset_ns: int | None = None,
    ) -> None:
        """The challenge for `tag` was sent: `user_ns` read just before the send call and
        `after_ns` just after it returned, `clock_offset_ns` (CLOCK_MONOTONIC - CLOCK_REALTIME)
        read before it. Without the last two, kernel stamps are not used for this round."""
        s, rnd = tag
        if rnd.tx_user_ns is None:
            rnd.tx_user_ns = user_ns
            rnd.tx_user_after_ns = after_ns
            rnd.tx_clock_offset_ns = clock_offset_ns
            if not s.finished:
                self._arm(s, user_ns + self._round_timeout_ns)

    def on_tx_kernel(self, tag: TxTag, stamp: KernelStamp) -> None:
        """The kernel's transmit timestamp for `tag` (from the socket's error queue)."""
        rnd = tag.round
        if rnd.tx_kernel is None:
            rnd.tx_kernel = stamp

    def handle_timer(self, now_ns: int) -> None:
        """Time out unanswered rounds whose deadline has passed."""
        while self._timers and self._timers[0][0] <= now_ns:
            _, sid, kind = heapq.heappop(self._timers)
            s = self._sessions.get(sid)
            if s is None or s.finished:
                continue
            if kind == _SESSION_TIMER:
                # A session whose challenges were never reported sent (send failures) or that
                # outlived every round timeout ends here, so sessions cannot pile up.
                self.stats.sessions_expired += 1
                self._finish(s)
                continue
            s.round_timer_queued = False
            if s.deadline_round != s.current or s.log[s.current].signature is not None:
                continue  # answered; the next challenge's send arms the next deadline
            if s.deadline_ns > now_ns:
                self._arm(s, s.deadline_ns)  # the entry was for an earlier round: move it on
                continue
            self.stats.rounds_lost += 1
            if len(s.log) < s.rounds and not self._peer_paid_for(s, m.CHALLENGE_LEN):
                self.stats.silent_sessions_ended += 1
                self._finish(s)
                continue
            self._advance(s)

    # --- output --------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    @property
    def has_events(self) -> bool:
        return bool(self._events)

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
        middle = challenge_middle(self.config.landmark_id, s.device_id, s.session_id)
        timed: list[tuple[int, int, _Round, TimestampSource]] = []
        for i, rnd in enumerate(s.log):
            if rnd.signature is None:
                continue
            rtt_source = rnd.rtt()
            if rtt_source is None:
                self._reject(Rejection.NO_TIMESTAMP)
                continue
            if rtt_source[0] > MAX_RTT_NS:
                # Answered too late to bound anything (a record refuses such an RTT): possible
                # when the round's timer fired late, or a config allows longer rounds.
                self.stats.rounds_lost += 1
                continue
            timed.append((rtt_source[0], i, rnd, rtt_source[1]))

        def signed_by_device(i: int, rnd: _Round) -> bool:
            assert rnd.signature is not None
            msg = CHALLENGE_DOMAIN + rnd.nonce + middle + i.to_bytes(4, "big")
            if verify_signature(s.device_public_key, rnd.signature, msg):
                return True
            self._reject(Rejection.BAD_SIGNATURE)
            return False

        # Only the minimum RTT bounds distance, so check signatures fastest first and stop at
        # the first that holds: that round is the fastest valid one, and every round faster
        # than it was forged and is left out. One check per session instead of k keeps the
        # landmark at its throughput target; `check_every_round` checks the slower rounds too.
        best: tuple[int, int, _Round, TimestampSource] | None = None
        forged: set[int] = set()
        for cand in sorted(timed):  # by RTT, then round number (unique: rounds never compared)
            if signed_by_device(cand[1], cand[2]):
                best = cand
                break
            forged.add(cand[1])
        if best is not None and self.config.check_every_round:
            for _, i, rnd, _ in timed:
                if i != best[1] and i not in forged and not signed_by_device(i, rnd):
                    forged.add(i)
        rtts = [rtt for rtt, i, _, _ in timed if i not in forged]
        if best is None:
            self.stats.sessions_without_record += 1
            reject = m.encode(
                m.Reject(s.session_id, m.RejectCode.NO_VALID_ROUNDS, "no valid answer")
            )
            if self._peer_paid_for(s, len(reject)):  # never more than a silent peer sent
                self._out.append(Outgoing(reject, s.addr))
            return None
        rtt, fastest, rnd, source = best
        assert rnd.signature is not None
        # The record's min RTT must be the checked round's: nothing unchecked may be faster.
        assert min(rtts) == rtt
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
        self._out.append(Outgoing(m.encode_record_message(s.session_id, record.to_bytes()), s.addr))
        return record

    # --- internals -------------------------------------------------------------------------

    def _reject(self, why: Rejection) -> None:
        self.stats.rejected[why.value] += 1

    def _on_hello(self, hello: m.Hello, size: int, addr: Addr, now_ns: int) -> None:
        # Until the cookie checks, the source address is only a claim: keep nothing, answer
        # with at most one datagram shorter than the HELLO (a RETRY, or BUSY when shutting down).
        if not self._accepting:
            self._reject(Rejection.BUSY)
            reply = m.Reject(hello.hello_id, m.RejectCode.BUSY, "landmark shutting down")
            self._out.append(Outgoing(m.encode(reply), addr))
            return
        fields = hello.cookie_fields()
        if hello.cookie:
            verdict = self._cookies.check(hello.cookie, addr, fields, now_ns)
            if verdict is not CookieCheck.VALID:
                self._reject(
                    Rejection.EXPIRED_COOKIE
                    if verdict is CookieCheck.EXPIRED
                    else Rejection.BAD_COOKIE
                )
        else:
            verdict = None
        if verdict is not CookieCheck.VALID:
            self.stats.retries_sent += 1
            cookie = self._cookies.issue(addr, fields, now_ns)
            self._out.append(Outgoing(m.encode_retry(hello.hello_id, cookie), addr))
            return
        # The peer receives at `addr`: per-source limits now count real sources.
        if not self._hellos.allow(addr[0], now_ns):
            self._reject(Rejection.RATE_LIMITED)
            reply = m.Reject(hello.hello_id, m.RejectCode.RATE_LIMITED, "too many sessions")
            self._out.append(Outgoing(m.encode(reply), addr))
            return
        if len(self._sessions) >= self.config.max_sessions:
            self._reject(Rejection.BUSY)
            reply = m.Reject(hello.hello_id, m.RejectCode.BUSY, "landmark busy")
            self._out.append(Outgoing(m.encode(reply), addr))
            return
        session_id = self._fresh_session_id()
        s = _Session(
            session_id=session_id,
            addr=addr,
            device_id=hello.device_id,
            device_public_key=hello.device_public_key,
            trust_level=hello.trust_level,
            rounds=min(hello.rounds, self.config.max_rounds),
            challenge_prefix=_CHALLENGE_HEADER + session_id,
            hello_bytes=size,
        )
        self._sessions[s.session_id] = s
        self.stats.sessions_opened += 1
        expiry_ns = now_ns + (s.rounds + 1) * self.config.round_timeout_ns
        heapq.heappush(self._timers, (expiry_ns, s.session_id, _SESSION_TIMER))
        accept = m.encode_session_accept(
            hello.hello_id, s.session_id, self.config.landmark_id, self.key_id, s.rounds
        )
        s.accept_bytes = len(accept)
        self._out.append(Outgoing(accept, addr))
        self._next_challenge(s)

    @staticmethod
    def _peer_paid_for(s: _Session, more_bytes: int) -> bool:
        """Whether sending `more_bytes` more keeps what the session sent within what its peer
        sent (its HELLO and answers). Only asked when a round is lost or no record comes, off
        the timed path: a peer that answers gets its next challenge at once, unasked."""
        answered = sum(1 for rnd in s.log if rnd.signature is not None)
        sent_in = s.hello_bytes + answered * m.RESPONSE_LEN
        sent_out = s.accept_bytes + len(s.log) * m.CHALLENGE_LEN
        return sent_out + more_bytes <= sent_in

    def _fresh_session_id(self) -> bytes:
        while True:
            sid = self._rng(SESSION_ID_LEN)
            if sid not in self._sessions:
                return sid

    def _next_challenge(self, s: _Session) -> None:
        nonce = self._rng(NONCE_LEN)
        rnd = _Round(nonce=nonce)
        s.log.append(rnd)
        s.current = round_no = s.current + 1
        # Same bytes as m.encode(m.Challenge(...)) (tested), without building the message.
        data = s.challenge_prefix + _ROUND_BYTES[round_no] + nonce
        self._out.append(Outgoing(data, s.addr, TxTag(s, rnd)))

    def _arm(self, s: _Session, deadline_ns: int) -> None:
        # Deadlines only move later, so a session keeps one heap entry, moved on lazily when
        # it fires early (handle_timer), instead of one push and one stale pop per round.
        s.deadline_ns = deadline_ns
        s.deadline_round = s.current
        if not s.round_timer_queued:
            s.round_timer_queued = True
            heapq.heappush(self._timers, (deadline_ns, s.session_id, _ROUND_TIMER))

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
