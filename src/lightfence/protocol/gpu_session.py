"""GPU-signed rounds over the wire: a landmark endpoint and an agent session (sans-IO).

A GPU session is a timed session whose answers the GPU signs (docs/trust.md). Its report is
about 4 KiB plus a 3 to 5 KiB chain: more than a datagram. So the timed answer carries only
SHA-256 of the signed report, which nobody can compute before the GPU has signed (the digest
covers the signature, and the signature covers the challenge-derived nonce); the report and
chain follow untimed, in fragments, and the landmark checks them against the digest.

    agent                                            landmark
      GPU_HELLO(hello_id, device_id, rounds, cookie, padding >= 360)  ->
                 <- RETRY(cookie)                          (no cookie yet: nothing kept)
      GPU_HELLO(..., cookie) ->
                 <- SESSION(hello_id, session, landmark, key id, k')
                 <- CHALLENGE(session, 0, nonce)           [clock: TX]
      GPU_ANSWER(session, 0, SHA-256(report)) ->           [clock: RX]
                 <- CHALLENGE(session, 1, nonce)  ...  k' rounds
      GPU_EVIDENCE(session, round, offset, total, chunk) ...   (untimed, every answered round)
                 <- GPU_RECORD(session, GPU round record JSON)  or REJECT(NO_VALID_ROUNDS)

Wire (after the 4-byte header `LF`, version 2, type):

| type | body |
| --- | --- |
| 8 GPU_HELLO | hello_id 8, device_id 16, rounds u8, cookie (u8 length), padding (u16 length) |
| 9 GPU_ANSWER | session_id 16, round u8, report SHA-256 32 (53 bytes, the CHALLENGE's size) |
| 10 GPU_EVIDENCE | session_id 16, round u8, offset u32, total u32, chunk (at most 1,100 bytes) |
| 11 GPU_RECORD | session_id 16, length u16, GPU round record (canonical JSON) |

Evidence of one round is `len(report) u32 || report || chain DER`, at most 96 KiB. The landmark
appraises answered rounds fastest first after the evidence is in (or `evidence_timeout_ns`
after the last round) and signs a record for the first that holds; it never answers evidence
with more bytes than the peer sent. Bounded: at most `max_sessions` GPU sessions of at most
`MAX_GPU_ROUNDS` rounds each.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from lightfence.attestation import AppraisalPolicy
from lightfence.crypto.keys import SigningKey
from lightfence.crypto.nonces import NonceSource
from lightfence.protocol import messages as m
from lightfence.protocol.challenge import ID_LEN, NONCE_LEN, SESSION_ID_LEN, id_bytes
from lightfence.protocol.cookie import CookieCheck, RetryCookies
from lightfence.protocol.gpu_round import (
    GpuEvidence,
    GpuRoundError,
    GpuRoundRecord,
    gpu_nonce,
    issue_gpu_round,
)
from lightfence.protocol.landmark_types import Addr
from lightfence.protocol.record import MAX_RTT_NS
from lightfence.protocol.round_timing import RoundTimes
from lightfence.protocol.wire import DecodeError, Reader

GPU_HELLO, GPU_ANSWER, GPU_EVIDENCE, GPU_RECORD = 8, 9, 10, 11
GPU_TYPES = frozenset((GPU_HELLO, GPU_ANSWER, GPU_EVIDENCE, GPU_RECORD))
MAX_GPU_ROUNDS = 8
MAX_EVIDENCE_BYTES = 96 * 1024
CHUNK_BYTES = 1100
GPU_ANSWER_LEN = m.HEADER_LEN + SESSION_ID_LEN + 1 + 32
DIGEST_LEN = 32


def _hdr(t: int) -> bytes:
    return m.MAGIC + bytes((m.PROTOCOL_VERSION, t))


def message_type(data: bytes) -> int | None:
    """The type byte of a well-headed datagram of this protocol version, else None."""
    if len(data) < m.HEADER_LEN or data[:2] != m.MAGIC or data[2] != m.PROTOCOL_VERSION:
        return None
    return data[3]


def encode_gpu_hello(hello_id: bytes, device_id: str, rounds: int, cookie: bytes = b"") -> bytes:
    body = _hdr(GPU_HELLO) + hello_id + id_bytes(device_id) + bytes((rounds, len(cookie))) + cookie
    pad = max(0, m.HELLO_MIN_BYTES - len(body) - 2)
    return body + pad.to_bytes(2, "big") + bytes(pad)


@dataclass(frozen=True)
class GpuHello:
    hello_id: bytes
    device_id: str
    rounds: int
    cookie: bytes

    def cookie_fields(self) -> bytes:
        return self.hello_id + id_bytes(self.device_id) + bytes((self.rounds,))


def decode_gpu_hello(data: bytes) -> GpuHello:
    if len(data) < m.HELLO_MIN_BYTES or len(data) > m.MAX_DATAGRAM_BYTES:
        raise DecodeError("GPU_HELLO must be padded to at least 360 bytes")
    r = Reader(data[m.HEADER_LEN :])
    hello_id, device_id, rounds = r.fixed(8), r.fixed(ID_LEN).hex(), r.u8()
    cookie = r.fixed(r.u8())
    if any(r.fixed(r.u16())):
        raise DecodeError("GPU_HELLO padding must be zeros")
    r.end()
    if not 1 <= rounds <= MAX_GPU_ROUNDS or len(cookie) > m.MAX_COOKIE_BYTES:
        raise DecodeError("GPU_HELLO rounds or cookie out of range")
    return GpuHello(hello_id, device_id, rounds, cookie)


def encode_evidence_chunks(session_id: bytes, round_no: int, evidence: GpuEvidence) -> list[bytes]:
    blob = len(evidence.report).to_bytes(4, "big") + evidence.report + evidence.chain_der
    head = _hdr(GPU_EVIDENCE) + session_id + bytes((round_no,))
    return [
        head + off.to_bytes(4, "big") + len(blob).to_bytes(4, "big") + blob[off : off + CHUNK_BYTES]
        for off in range(0, len(blob), CHUNK_BYTES)
    ]


def _split_evidence(blob: bytes) -> GpuEvidence:
    n = int.from_bytes(blob[:4], "big")
    if len(blob) < 4 + n:
        raise GpuRoundError("evidence shorter than its report length")
    return GpuEvidence(blob[4 : 4 + n], blob[4 + n :])


@dataclass(slots=True, eq=False)
class _GpuRound(RoundTimes):
    nonce: bytes = b""
    digest: bytes | None = None
    blob: bytearray | None = None
    total: int = 0
    received: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return (
            self.blob is not None
            and sum(min(CHUNK_BYTES, self.total - o) for o in self.received) == self.total
        )


@dataclass(slots=True, eq=False)
class _GpuSession:
    session_id: bytes
    addr: Addr
    device_id: str
    rounds: int
    bytes_in: int
    expires_ns: int
    bytes_out: int = 0
    log: list[_GpuRound] = field(default_factory=list)
    deadline_ns: int = 0
    evidence_deadline_ns: int | None = None
    finished: bool = False


@dataclass(frozen=True)
class GpuSessionFinished:
    session_id: bytes


@dataclass(frozen=True)
class GpuOutgoing:
    data: bytes
    addr: Addr
    tag: tuple[bytes, int] | None = None
    """(session, round) of a challenge: report its send time with on_sent."""


@dataclass
class GpuLandmarkStats:
    sessions_opened: int = 0
    records_issued: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, why: str) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1


class GpuLandmarkEndpoint:
    """A landmark's GPU sessions. Same contract as LandmarkEndpoint: bytes and times in."""

    def __init__(
        self,
        landmark_id: str,
        key: SigningKey,
        policy: AppraisalPolicy,
        *,
        round_timeout_ns: int = 1_000_000_000,
        evidence_timeout_ns: int = 5_000_000_000,
        max_sessions: int = 32,
        rng: Callable[[int], bytes] | None = None,
    ) -> None:
        self.landmark_id, self.key, self.policy = landmark_id, key, policy
        self.round_timeout_ns, self.evidence_timeout_ns = round_timeout_ns, evidence_timeout_ns
        self.max_sessions = max_sessions
        self._rng = rng or NonceSource()
        self._cookies = RetryCookies(self._rng)
        self._sessions: dict[bytes, _GpuSession] = {}
        self._out: list[GpuOutgoing] = []
        self._events: deque[GpuSessionFinished] = deque()
        self.stats = GpuLandmarkStats()

    # --- input -------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Addr, now_ns: int) -> None:
        t = message_type(data)
        try:
            if t == GPU_ANSWER and len(data) == GPU_ANSWER_LEN:
                self._on_answer(data, addr, now_ns)
            elif t == GPU_EVIDENCE:
                self._on_evidence(data, addr, now_ns)
            elif t == GPU_HELLO:
                self._on_hello(decode_gpu_hello(data), len(data), addr, now_ns)
            else:
                self.stats.reject("malformed")
        except DecodeError:
            self.stats.reject("malformed")

    def on_sent(self, tag: tuple[bytes, int], user_ns: int) -> None:
        s = self._sessions.get(tag[0])
        if s is not None and tag[1] < len(s.log) and s.log[tag[1]].tx_user_ns is None:
            s.log[tag[1]].tx_user_ns = user_ns
            s.deadline_ns = user_ns + self.round_timeout_ns

    def handle_timer(self, now_ns: int) -> None:
        for s in list(self._sessions.values()):
            if s.finished:
                continue
            if now_ns >= s.expires_ns:  # also ends sessions whose sends were never reported
                self._finish(s)
            elif s.evidence_deadline_ns is not None:
                if now_ns >= s.evidence_deadline_ns:
                    self._finish(s)
            elif s.deadline_ns and now_ns >= s.deadline_ns and s.log[-1].digest is None:
                self._advance(s, now_ns)  # round lost

    def get_timer(self) -> int | None:
        times = [
            min(
                s.expires_ns,
                s.evidence_deadline_ns
                if s.evidence_deadline_ns is not None
                else s.deadline_ns or s.expires_ns,
            )
            for s in self._sessions.values()
            if not s.finished
        ]
        return min(times, default=None)

    def datagrams_to_send(self) -> list[GpuOutgoing]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> GpuSessionFinished | None:
        return self._events.popleft() if self._events else None

    def issue_record(self, session_id: bytes, utc_ns: int) -> GpuRoundRecord | None:
        """Appraise answered rounds fastest first; sign and queue a record for the first that
        holds. Off the timed path. None (and a REJECT) when no round holds."""
        issued = self.issue_round(session_id, utc_ns)
        return None if issued is None else issued[0]

    def issue_round(
        self, session_id: bytes, utc_ns: int
    ) -> tuple[GpuRoundRecord, GpuEvidence] | None:
        """issue_record, with the evidence the record binds (for the verifier service)."""
        s = self._sessions.pop(session_id, None)
        if s is None or not s.finished:
            if s is not None:
                self._sessions[session_id] = s
            raise ValueError("issue_record is for a finished session, once")
        timed = []
        for i, rnd in enumerate(s.log):
            rtt = rnd.rtt() if rnd.digest is not None else None
            if rtt is not None and rtt[0] <= MAX_RTT_NS and rnd.complete:
                timed.append((rtt[0], i, rnd, rtt[1]))
        for rtt_ns, i, rnd, source in sorted(timed, key=lambda t: (t[0], t[1])):
            assert rnd.blob is not None
            try:
                evidence = _split_evidence(bytes(rnd.blob))
            except GpuRoundError:
                self.stats.reject("bad_evidence")
                continue
            if evidence.report_sha256 != rnd.digest:
                self.stats.reject("evidence_not_timed")  # not the report whose digest was timed
                continue
            record, _ = issue_gpu_round(
                landmark_id=self.landmark_id,
                landmark_key=self.key,
                device_id=s.device_id,
                session_id=s.session_id,
                round_no=i,
                nonce=rnd.nonce,
                rtt_ns=rtt_ns,
                timestamp_source=source,
                evidence=evidence,
                policy=self.policy,
                utc_ns=utc_ns,
            )
            if record is None:
                self.stats.reject("appraisal_failed")
                continue
            body = json.dumps(record.to_json_dict(), sort_keys=True, separators=(",", ":"))
            raw = body.encode()
            reply = _hdr(GPU_RECORD) + s.session_id + len(raw).to_bytes(2, "big") + raw
            if s.bytes_out + len(reply) <= s.bytes_in:  # never more than the peer sent
                self._out.append(GpuOutgoing(reply, s.addr))
            self.stats.records_issued += 1
            return record, evidence
        reject = m.encode(m.Reject(s.session_id, m.RejectCode.NO_VALID_ROUNDS, "no valid round"))
        if s.bytes_out + len(reject) <= s.bytes_in:
            self._out.append(GpuOutgoing(reject, s.addr))
        return None

    # --- internals -----------------------------------------------------------------------
    def _send(self, s: _GpuSession, data: bytes, tag: tuple[bytes, int] | None = None) -> None:
        s.bytes_out += len(data)
        self._out.append(GpuOutgoing(data, s.addr, tag))

    def _on_hello(self, hello: GpuHello, size: int, addr: Addr, now_ns: int) -> None:
        fields = hello.cookie_fields()
        ok = bool(hello.cookie) and (
            self._cookies.check(hello.cookie, addr, fields, now_ns) is CookieCheck.VALID
        )
        if not ok:
            self._out.append(
                GpuOutgoing(
                    m.encode_retry(hello.hello_id, self._cookies.issue(addr, fields, now_ns)), addr
                )
            )
            return
        if len(self._sessions) >= self.max_sessions:
            self.stats.reject("busy")
            busy = m.Reject(hello.hello_id, m.RejectCode.BUSY, "landmark busy")
            self._out.append(GpuOutgoing(m.encode(busy), addr))
            return
        sid = self._rng(SESSION_ID_LEN)
        expires = now_ns + (hello.rounds + 1) * self.round_timeout_ns + self.evidence_timeout_ns
        s = _GpuSession(sid, addr, hello.device_id, hello.rounds, size, expires)
        self._sessions[sid] = s
        self.stats.sessions_opened += 1
        self._send(
            s,
            m.encode_session_accept(
                hello.hello_id, sid, self.landmark_id, self.key.key_id, s.rounds
            ),
        )
        self._next_challenge(s)

    def _next_challenge(self, s: _GpuSession) -> None:
        nonce = self._rng(NONCE_LEN)
        s.log.append(_GpuRound(nonce=nonce))
        i = len(s.log) - 1
        self._send(s, m.encode(m.Challenge(s.session_id, i, nonce)), (s.session_id, i))

    def _advance(self, s: _GpuSession, now_ns: int) -> None:
        if len(s.log) < s.rounds and s.bytes_out + m.CHALLENGE_LEN <= s.bytes_in:
            self._next_challenge(s)
        else:
            s.evidence_deadline_ns = now_ns + self.evidence_timeout_ns
            self._finish_if_complete(s)

    def _finish_if_complete(self, s: _GpuSession) -> None:
        if s.evidence_deadline_ns is not None and all(
            r.complete for r in s.log if r.digest is not None
        ):
            self._finish(s)

    def _finish(self, s: _GpuSession) -> None:
        s.finished = True
        self._events.append(GpuSessionFinished(s.session_id))

    def _session_for(self, data: bytes, addr: Addr) -> _GpuSession | None:
        s = self._sessions.get(data[m.HEADER_LEN : m.HEADER_LEN + SESSION_ID_LEN])
        if s is None or s.finished:
            self.stats.reject("unknown_session")
            return None
        if s.addr != addr:
            self.stats.reject("wrong_source")
            return None
        return s

    def _on_answer(self, data: bytes, addr: Addr, now_ns: int) -> None:
        s = self._session_for(data, addr)
        if s is None:
            return
        round_no = data[m.HEADER_LEN + SESSION_ID_LEN]
        if s.evidence_deadline_ns is not None or round_no != len(s.log) - 1:
            self.stats.reject("stale_or_future_round")
            return
        rnd = s.log[round_no]
        if rnd.digest is not None or rnd.tx_user_ns is None:
            self.stats.reject("duplicate_or_untimed")
            return
        rnd.rx_user_ns = now_ns
        rnd.digest = data[-DIGEST_LEN:]
        s.bytes_in += len(data)
        self._advance(s, now_ns)

    def _on_evidence(self, data: bytes, addr: Addr, now_ns: int) -> None:
        s = self._session_for(data, addr)
        if s is None:
            return
        r = Reader(data[m.HEADER_LEN + SESSION_ID_LEN :])
        round_no, offset, total = r.u8(), r.u32(), r.u32()
        chunk = data[m.HEADER_LEN + SESSION_ID_LEN + 9 :]
        if round_no >= len(s.log) or s.log[round_no].digest is None:
            self.stats.reject("evidence_for_unanswered_round")
            return
        rnd = s.log[round_no]
        if not 0 < total <= MAX_EVIDENCE_BYTES or offset % CHUNK_BYTES or offset >= total:
            self.stats.reject("malformed")
            return
        if len(chunk) != min(CHUNK_BYTES, total - offset):
            self.stats.reject("malformed")
            return
        if rnd.blob is None:
            rnd.blob, rnd.total = bytearray(total), total
        if total != rnd.total or offset in rnd.received:
            self.stats.reject("duplicate_or_inconsistent_evidence")
            return
        rnd.blob[offset : offset + len(chunk)] = chunk
        rnd.received.add(offset)
        s.bytes_in += len(data)
        self._finish_if_complete(s)


# --- agent side ----------------------------------------------------------------------------

GpuSign = Callable[[bytes], GpuEvidence]
"""The GPU signer as the agent session uses it: nonce -> report and chain."""


class GpuAgentSession:
    """One GPU session against one landmark, from the device's side (sans-IO)."""

    def __init__(
        self,
        device_id: str,
        rounds: int,
        sign: GpuSign,
        hello_id: bytes,
    ) -> None:
        self.device_id, self.rounds, self.sign, self.hello_id = device_id, rounds, sign, hello_id
        self.session_id: bytes | None = None
        self.landmark_id = ""
        self.agreed_rounds = 0
        self.evidence: dict[int, GpuEvidence] = {}
        self.record: GpuRoundRecord | None = None
        self.error: str | None = None
        self.done = False

    def start(self, cookie: bytes = b"") -> bytes:
        return encode_gpu_hello(self.hello_id, self.device_id, self.rounds, cookie)

    def receive_datagram(self, data: bytes) -> list[bytes]:
        """Replies to send, in order. The answer to a challenge is first and immediate."""
        t = message_type(data)
        if t == GPU_RECORD:
            return self._on_record(data)
        try:
            msg = m.decode(data)
        except DecodeError:
            return []
        if isinstance(msg, m.Retry) and msg.hello_id == self.hello_id:
            return [self.start(msg.cookie)]
        if isinstance(msg, m.SessionAccept) and msg.hello_id == self.hello_id:
            self.session_id, self.landmark_id = msg.session_id, msg.landmark_id
            self.agreed_rounds = msg.rounds
            return []
        if isinstance(msg, m.Challenge) and msg.session_id == self.session_id:
            nonce = gpu_nonce(
                msg.nonce, self.landmark_id, self.device_id, msg.session_id, msg.round_no
            )
            ev = self.sign(nonce)  # the GPU signs inside the timed round
            self.evidence[msg.round_no] = ev
            answer = _hdr(GPU_ANSWER) + msg.session_id + bytes((msg.round_no,)) + ev.report_sha256
            out = [answer]
            if msg.round_no == self.agreed_rounds - 1:
                out += self.evidence_datagrams()
            return out
        if isinstance(msg, m.Reject):
            self.error, self.done = f"landmark rejected: {msg.code.name} {msg.detail}", True
        return []

    def evidence_datagrams(self) -> list[bytes]:
        assert self.session_id is not None
        out: list[bytes] = []
        for i, ev in sorted(self.evidence.items()):
            out += encode_evidence_chunks(self.session_id, i, ev)
        return out

    def _on_record(self, data: bytes) -> list[bytes]:
        body = data[m.HEADER_LEN + SESSION_ID_LEN + 2 :]
        if data[m.HEADER_LEN : m.HEADER_LEN + SESSION_ID_LEN] != self.session_id:
            return []
        try:
            self.record = GpuRoundRecord.from_json_dict(json.loads(body))
        except (ValueError, GpuRoundError) as exc:
            self.error = f"unreadable GPU record: {exc}"
        self.done = True
        return []
