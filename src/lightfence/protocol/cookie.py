"""Stateless retry cookies: a landmark keeps nothing for a HELLO until its sender proves it
receives at its source address (in the manner of QUIC Retry and DTLS HelloVerifyRequest).

A cookie is `bucket (u32) || HMAC-SHA256(secret, bucket || address || port || HELLO fields)`
cut to 16 bytes, where `bucket` counts `BUCKET_S` intervals of the landmark's monotonic clock.
Only someone who received the RETRY sent to that address and port can echo it; it is bound to
the HELLO's fields, so it cannot open a session for another device or key. It is accepted for
`LIFETIME_S` after issue. The secret is drawn afresh every `ROTATE_S` (the previous one is kept
one more period, so a cookie issued just before a rotation still checks); nothing else is kept.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from enum import StrEnum

from lightfence.protocol.landmark_types import Addr

BUCKET_S = 1
LIFETIME_S = 10
"""A cookie checks for 10 to 11 s after issue: far more than a round trip, short enough that a
cookie seen on the path is soon worthless."""
ROTATE_S = 120
"""Secret lifetime; more than LIFETIME_S, so a valid cookie's secret is always still held."""
TAG_LEN = 16
COOKIE_LEN = 4 + TAG_LEN
SECRET_LEN = 32
_NS_PER_BUCKET = BUCKET_S * 1_000_000_000
_BUCKETS_PER_SECRET = ROTATE_S // BUCKET_S
_LIFETIME_BUCKETS = LIFETIME_S // BUCKET_S
_BUCKET_WRAP = 1 << 32


class CookieCheck(StrEnum):
    VALID = "valid"
    EXPIRED = "expired_cookie"
    """Well formed and from this landmark's recent past, but older than LIFETIME_S."""
    INVALID = "bad_cookie"
    """Wrong length, forged, for another address or port, for other HELLO fields, from the
    future, or made with a secret no longer held."""


class RetryCookies:
    """Issue and check cookies; pure (time and randomness passed in)."""

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self._rng = rng
        self._secrets: dict[int, bytes] = {}
        """Secret by generation (bucket // _BUCKETS_PER_SECRET): the current and previous."""

    def _current_secret(self, generation: int) -> bytes:
        secret = self._secrets.get(generation)
        if secret is None:
            secret = self._secrets[generation] = self._rng(SECRET_LEN)
            for old in [g for g in self._secrets if g < generation - 1]:
                del self._secrets[old]
        return secret

    @staticmethod
    def _bucket(now_ns: int) -> int:
        return (now_ns // _NS_PER_BUCKET) % _BUCKET_WRAP

    @staticmethod
    def _tag(secret: bytes, bucket: bytes, addr: Addr, fields: bytes) -> bytes:
        host = addr[0].encode()
        msg = b"".join((bucket, bytes((len(host),)), host, addr[1].to_bytes(2, "big"), fields))
        return hmac.digest(secret, msg, "sha256")[:TAG_LEN]

    def issue(self, addr: Addr, fields: bytes, now_ns: int) -> bytes:
        """The cookie for a HELLO with `fields` (Hello.cookie_fields) from `addr`, now."""
        bucket = self._bucket(now_ns)
        secret = self._current_secret(bucket // _BUCKETS_PER_SECRET)
        stamp = bucket.to_bytes(4, "big")
        return stamp + self._tag(secret, stamp, addr, fields)

    def check(self, cookie: bytes, addr: Addr, fields: bytes, now_ns: int) -> CookieCheck:
        if len(cookie) != COOKIE_LEN:
            return CookieCheck.INVALID
        stamp = cookie[:4]
        bucket = int.from_bytes(stamp, "big")
        age = self._bucket(now_ns) - bucket
        if age < 0:
            return CookieCheck.INVALID
        secret = self._secrets.get(bucket // _BUCKETS_PER_SECRET)
        if secret is None:
            return CookieCheck.INVALID  # not made here, or with a secret long since dropped
        if not hmac.compare_digest(cookie[4:], self._tag(secret, stamp, addr, fields)):
            return CookieCheck.INVALID
        return CookieCheck.EXPIRED if age > _LIFETIME_BUCKETS else CookieCheck.VALID
