"""The device's side of one session with one landmark, as a pure state machine.

`start` gives the HELLO datagram; `receive_datagram` takes each datagram from the landmark and
returns what to send back (the HELLO again with the landmark's retry cookie, which proves the
device receives at its address; the signed answer to a challenge, at once). The device never times
anything: RTT is measured on the landmark's clock only. The agent checks the landmark is the
one it expected (its key id) and that the final record verifies before accepting it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from lightfence.crypto.keys import SigningKey, key_id
from lightfence.identity.device import DeviceIdentity
from lightfence.protocol import messages as m
from lightfence.protocol.challenge import CHALLENGE_DOMAIN, challenge_middle
from lightfence.protocol.record import MeasurementRecord, RecordError, verify
from lightfence.protocol.wire import DecodeError

_PREFIX_LEN = m.HEADER_LEN + 16
MAX_RETRIES = 3
"""RETRYs answered per session: one is the protocol; a few more cover a cookie that expired or
a landmark that restarted in between; beyond that the landmark is not accepting ours."""


class AgentState(StrEnum):
    IDLE = "idle"
    WAITING_SESSION = "waiting_session"
    MEASURING = "measuring"
    DONE = "done"
    FAILED = "failed"


class AgentProtocolError(Exception):
    """Local misuse of the agent session API (a bug in the caller, not the network)."""


@dataclass(frozen=True)
class Answered:
    """A challenge was signed and its answer returned for sending."""

    round_no: int
    rounds: int


@dataclass(frozen=True)
class RecordReceived:
    record: MeasurementRecord


@dataclass(frozen=True)
class SessionRejected:
    code: m.RejectCode
    detail: str

    @property
    def retryable(self) -> bool:
        return self.code in (
            m.RejectCode.BUSY,
            m.RejectCode.RATE_LIMITED,
            m.RejectCode.NO_VALID_ROUNDS,
        )


AgentEvent = Answered | RecordReceived | SessionRejected


@dataclass
class AgentSession:
    """One measurement session of this device with one landmark."""

    key: SigningKey
    identity: DeviceIdentity
    landmark_id: str
    """The landmark's registry name; a SESSION naming another landmark is refused."""
    landmark_public_key: bytes
    rounds: int = 10
    rng: Callable[[int], bytes] = os.urandom
    state: AgentState = AgentState.IDLE
    record: MeasurementRecord | None = None
    error: str | None = None
    reject_code: m.RejectCode | None = None
    """Set when the landmark refused the session or issued no record."""
    rejected: Counter[str] = field(default_factory=Counter)
    _hello_id: bytes = b""
    _hello: m.Hello | None = None
    retries: int = 0
    _session_id: bytes = b""
    _rounds_served: int = 0
    _answered: set[int] = field(default_factory=set)
    _challenge_prefix: bytes = b"-"  # matches no datagram until a session is accepted
    _response_prefix: bytes = b""
    _signed_middle: bytes = b""
    _events: list[AgentEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.key.public_bytes != self.identity.public_key:
            raise AgentProtocolError("the signing key is not the identity's key")

    def start(self) -> bytes:
        """The HELLO datagram that opens the session."""
        if self.state is not AgentState.IDLE:
            raise AgentProtocolError(f"start() in state {self.state}")
        self._hello_id = self.rng(m.HELLO_ID_LEN)
        self.state = AgentState.WAITING_SESSION
        self._hello = m.Hello(
            self._hello_id,
            self.identity.device_id,
            self.identity.public_key,
            self.identity.trust_level,
            self.rounds,
        )
        return m.encode(self._hello)

    @property
    def retryable(self) -> bool:
        """Whether a new session may succeed: refusals for load or loss are, protocol faults
        (wrong landmark key, a record that does not verify) are not."""
        if self.state is AgentState.FAILED:
            return self.reject_code is not None and SessionRejected(self.reject_code, "").retryable
        return self.state is not AgentState.DONE

    def next_event(self) -> AgentEvent | None:
        return self._events.pop(0) if self._events else None

    @property
    def session_id(self) -> bytes:
        return self._session_id

    def receive_datagram(self, data: bytes) -> list[bytes]:
        """Handle one datagram from the landmark; return the datagrams to send, in order."""
        if len(data) == m.CHALLENGE_LEN and data[:_PREFIX_LEN] == self._challenge_prefix:
            # Fast path for the timed exchange: a challenge is fixed-size, so an exact length
            # and header-plus-session match is a complete parse. Everything else is decoded.
            return self._answer(data[_PREFIX_LEN], data[_PREFIX_LEN + 1 :])
        try:
            msg = m.decode(data)
        except DecodeError:
            self.rejected["malformed"] += 1
            return []
        match msg:
            case m.SessionAccept():
                self._on_accept(msg)
            case m.Challenge():
                return self._on_challenge(msg)
            case m.RecordMessage():
                self._on_record(msg)
            case m.Reject():
                self._on_reject(msg)
            case m.Retry():
                return self._on_retry(msg)
            case _:
                self.rejected["unexpected_type"] += 1
        return []

    def _on_accept(self, msg: m.SessionAccept) -> None:
        if self.state is not AgentState.WAITING_SESSION or msg.hello_id != self._hello_id:
            self.rejected["unexpected_session"] += 1
            return
        if msg.landmark_id != self.landmark_id:
            self._fail(f"landmark answered as {msg.landmark_id!r}, expected {self.landmark_id!r}")
            return
        if msg.landmark_key_id != key_id(self.landmark_public_key):
            self._fail(
                f"landmark {self.landmark_id} presented key {msg.landmark_key_id}, not the "
                f"key in the landmarks file ({key_id(self.landmark_public_key)})"
            )
            return
        self._session_id = msg.session_id
        self._rounds_served = msg.rounds
        self._challenge_prefix = m.header(m.MessageType.CHALLENGE) + msg.session_id
        self._response_prefix = m.header(m.MessageType.RESPONSE) + msg.session_id
        self._signed_middle = challenge_middle(
            self.landmark_id, self.identity.device_id, msg.session_id
        )
        self.state = AgentState.MEASURING

    def _on_retry(self, msg: m.Retry) -> list[bytes]:
        if (
            self.state is not AgentState.WAITING_SESSION
            or msg.hello_id != self._hello_id
            or self._hello is None
        ):
            self.rejected["unexpected_retry"] += 1
            return []
        if self.retries >= MAX_RETRIES:
            self._fail(f"landmark {self.landmark_id} asked for its cookie {self.retries + 1} times")
            return []
        self.retries += 1
        return [m.encode(replace(self._hello, cookie=msg.cookie))]

    def _on_challenge(self, msg: m.Challenge) -> list[bytes]:
        if self.state is not AgentState.MEASURING or msg.session_id != self._session_id:
            self.rejected["unknown_session"] += 1
            return []
        return self._answer(msg.round_no, msg.nonce)

    def _answer(self, round_no: int, nonce: bytes) -> list[bytes]:
        if round_no >= self._rounds_served or round_no in self._answered:
            self.rejected["bad_round"] += 1
            return []
        signed = CHALLENGE_DOMAIN + nonce + self._signed_middle + round_no.to_bytes(4, "big")
        answer = self._response_prefix + bytes([round_no]) + self.key.sign(signed)
        self._answered.add(round_no)
        self._events.append(Answered(round_no, self._rounds_served))
        return [answer]

    def _on_record(self, msg: m.RecordMessage) -> None:
        if self.state is not AgentState.MEASURING or msg.session_id != self._session_id:
            self.rejected["unknown_session"] += 1
            return
        try:
            record = MeasurementRecord.from_bytes(msg.record)
        except (DecodeError, RecordError) as exc:
            self._fail(f"malformed record from {self.landmark_id}: {exc}")
            return
        if (
            record.session_id != self._session_id
            or record.device_id != self.identity.device_id
            or record.landmark_id != self.landmark_id
            or record.trust_level is not self.identity.trust_level
        ):
            self._fail(f"record from {self.landmark_id} names another session or device")
            return
        try:
            verify(record, self.landmark_public_key, self.identity.public_key)
        except RecordError as exc:
            self._fail(f"record from {self.landmark_id} does not verify: {exc}")
            return
        self.record = record
        self.state = AgentState.DONE
        self._events.append(RecordReceived(record))

    def _on_reject(self, msg: m.Reject) -> None:
        if (self.state is AgentState.WAITING_SESSION and msg.ref == self._hello_id) or (
            self.state is AgentState.MEASURING and msg.ref == self._session_id
        ):
            self.state = AgentState.FAILED
            self.reject_code = msg.code
            self.error = f"landmark {self.landmark_id} refused: {msg.code.name} {msg.detail}"
            self._events.append(SessionRejected(msg.code, msg.detail))
        else:
            self.rejected["unexpected_reject"] += 1

    def _fail(self, why: str) -> None:
        self.state = AgentState.FAILED
        self.error = why
