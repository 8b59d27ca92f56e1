"""The landmark endpoint's vocabulary: its configuration, its counters, why it drops things,
and the events it hands its adapter. (Datagrams to send and their tags are defined with the
endpoint in landmark_session: a tag holds the endpoint's own round state.)"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

Addr = tuple[str, int]


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
    BAD_COOKIE = "bad_cookie"
    """A HELLO whose cookie is forged, for another address, port or HELLO, or unknown here."""
    EXPIRED_COOKIE = "expired_cookie"
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
    check_every_round: bool = False
    """Check the device's signature on every answered round, not only on the fastest valid one.
    Off by default: only the fastest round bounds distance, and it is always checked (see
    LandmarkEndpoint.issue_record). On, a record lists only checked RTTs, at k checks a session."""


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
    retries_sent: int = 0
    """RETRYs sent: one per HELLO without a valid cookie (no state kept for any of them)."""
    silent_sessions_ended: int = 0
    """Sessions ended early because one more challenge would have sent the peer more bytes than
    it sent (a peer that answers nothing gets no more than its HELLO's size)."""
    rejected: Counter[str] = field(default_factory=Counter)
