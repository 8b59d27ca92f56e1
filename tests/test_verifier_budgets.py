"""Per-token write budgets (verifier.ratelimit) on a fake clock: refill, refusal without spending,
debt from a quota charged after the fact, independence of tokens."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.verifier.ratelimit import Buckets, Budget, WriteLimits


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_bucket_refills_and_refuses_without_spending() -> None:
    clock = Clock()
    b = Buckets(Budget("records", rate_per_s=10, burst=100), clock)
    assert b.take("a", 100) == 0
    assert b.take("a", 1) == 0.1  # one unit short: 0.1 s at 10/s
    assert b.take("b", 100) == 0  # another token has its own bucket
    clock.t = 5.0
    assert b.take("a", 60) == 1.0  # 50 there, 10 missing at 10/s; the refusal spends nothing
    assert b.take("a", 50) == 0
    clock.t = 1e6
    assert b.take("a", 100) == 0 and b.take("a", 1) > 0  # never above the burst


def test_debt_blocks_writes_until_refilled() -> None:
    clock = Clock()
    limits = WriteLimits(
        Budget("write requests", 100, 100),
        Budget("records", 0, 0),  # off
        Budget("rejected records", 2, 10),
        clock,
    )
    assert limits.admit_records("a", 10**9) is None  # a budget of rate 0 is off
    limits.rejections.charge("a", 30)  # 20 into debt
    refused = limits.admit_write("a")
    assert refused is not None and "rejected" in refused[0] and refused[1] == 10.0
    assert limits.admit_write("b") is None
    clock.t = 10.0
    assert limits.admit_write("a") is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 10, allow_nan=False), st.integers(0, 200)), min_size=1, max_size=40
    )
)
def test_never_more_than_burst_plus_refill(steps: list[tuple[float, int]]) -> None:
    """Whatever the sequence of waits and costs, what was granted is at most the burst plus
    the rate times the time elapsed."""
    clock = Clock()
    rate, burst = 7.0, 50.0
    b = Buckets(Budget("records", rate, burst), clock)
    granted = 0.0
    for wait, cost in steps:
        clock.t += wait
        if b.take("t", cost) == 0:
            granted += cost
        assert granted <= burst + rate * clock.t + 1e-6
