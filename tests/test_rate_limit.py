from __future__ import annotations

from lightfence.protocol.rate_limit import SourceRateLimiter

S = 1_000_000_000


def test_bucket_refills_at_the_rate() -> None:
    rl = SourceRateLimiter(rate_per_s=2.0, burst=2, max_sources=10)
    assert [rl.allow("a", 0) for _ in range(3)] == [True, True, False]
    assert rl.allow("a", S // 2)  # one token back after half a second
    assert not rl.allow("a", S // 2)
    assert rl.allow("b", 0)  # sources are independent


def test_memory_is_bounded_by_max_sources() -> None:
    rl = SourceRateLimiter(rate_per_s=1.0, burst=1, max_sources=100)
    for i in range(10_000):
        rl.allow(f"10.0.{i // 256}.{i % 256}", i)
    assert len(rl) == 100


def test_time_going_backwards_never_adds_tokens() -> None:
    rl = SourceRateLimiter(rate_per_s=1.0, burst=1, max_sources=10)
    assert rl.allow("a", 10 * S)
    assert not rl.allow("a", 0)
