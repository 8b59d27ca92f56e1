"""The one retry delay: exponential backoff with random jitter.

Used by the agent between session attempts and by the landmark between deliveries to an
unreachable verifier. The jitter spreads retries out: a fleet of agents (or landmarks) that
failed together, on a verifier restart say, must not come back in lockstep.
"""

from __future__ import annotations

import random

JITTER_FRACTION = 0.5
"""Each delay is stretched by a random factor in [1, 1 + JITTER_FRACTION)."""


def backoff_delay_s(
    attempt: int,
    first_s: float,
    max_s: float,
    rng: random.Random | None = None,
    jitter_fraction: float = JITTER_FRACTION,
) -> float:
    """Seconds to wait before retry `attempt` (0 for the first retry): `first_s` doubled per
    attempt up to `max_s`, then stretched by up to `jitter_fraction` at random."""
    if attempt < 0 or first_s < 0 or max_s < 0 or jitter_fraction < 0:
        raise ValueError("attempt, delays and jitter must be >= 0")
    base = min(max_s, first_s * 2.0 ** min(attempt, 1023))  # 2.0 ** 1024 overflows
    return base * (1.0 + jitter_fraction * (rng or random).random())
