"""A randomised search for soundness violations: honest physics at every scale, known truth.

Each case puts a device near one of HOTSPOTS, measures it from 1-8 landmarks at 0-50 m, up to
300 km, up to 20,003 km, about a hemisphere (9,900-10,100 km) or near its antipode, with RTT =
2 x GeographicLib distance / c plus an extra delay (none, 0.1 us, 0.1 ms, up to 3 ms, up to 60 ms),
and a random policy and f. A violation is a VERIFIED whose true position is outside the allowed
region (geodesic distance for discs), a REFUTED of the true country, or INCONSISTENT for honest
landmarks. Prints every violation and the counts; exits 1 if there was one.

    python -m bench.soundness_search --seed 1 --cases 2000
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np

from lightfence.core.kinds import VerdictKind
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import parse_policy
from lightfence.core.robust import Liars
from lightfence.core.verdict import decide
from lightfence.geo.sphere import destination, geodesic_km
from lightfence.units import C_VACUUM_KM_PER_MS

HOTSPOTS = [
    (22.31, 112.01),
    (22.28, 114.16),
    (40.4, -3.7),
    (41.9, 12.5),
    (39.0, 121.0),
    (24.45, 118.35),
    (1.3, 103.8),
    (49.6, 6.1),
    (47.5, 9.6),
    (65.0, -179.9),
    (-17.8, 179.5),
    (89.9, 0.0),
    (-89.9, 40.0),
    (31.2, 121.5),
    (25.0, 121.5),
    (53.5, 9.9),
]
POLICIES = [
    "outside:CN,HK,MO",
    "in:DE,FR",
    "in:ES",
    "in:IT",
    "in:CN",
    "in:DE",
    "outside:RU",
    "within:47.37,8.54,3",
    "within:22.3,114.2,50",
]
CLAIMS = ("CN", "HK", "ES", "IT", "DE", "FR", "TW")


def _case(rnd: random.Random) -> tuple[float, float, list[Measurement]]:
    lat, lon = destination(
        *rnd.choice(HOTSPOTS), rnd.uniform(0, 360), rnd.choice([0, 1, 5, 30, 150]) * rnd.random()
    )
    out = []
    for i in range(rnd.randint(1, 8)):
        dist = rnd.choice(
            [
                rnd.uniform(0, 0.05),
                rnd.uniform(0, 300),
                rnd.uniform(300, 20003),
                rnd.uniform(9900, 10100),
                rnd.uniform(19950, 20003.9),
            ]
        )
        la, lo = destination(lat, lon, rnd.uniform(0, 360), dist)
        extra = rnd.choice([0.0, 0.0, 1e-7, 1e-4, rnd.uniform(0, 3), rnd.uniform(0, 60)])
        rtt = max(2 * geodesic_km(la, lo, lat, lon) / C_VACUUM_KM_PER_MS, 1e-9) + extra
        out.append(Measurement(Landmark(f"l{i}", la, lo), rtt))
    return lat, lon, out


def _allowed(text: str, lat: float, lon: float) -> bool:
    if text.startswith("within:"):
        a, b, r = (float(x) for x in text.split(":")[1].split(","))
        return geodesic_km(a, b, lat, lon) <= r
    region = parse_policy(text).allowed
    assert region is not None
    return bool(region.contains(np.array([lat]), np.array([lon]))[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soundness_search")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=2000)
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    counts: dict[str, int] = {}
    bad = 0
    start = time.perf_counter()
    for _ in range(args.cases):
        lat, lon, ms = _case(rnd)
        liars: Liars = rnd.choice([0, 1, 2, "auto"])
        text = rnd.choice(POLICIES)
        verdict = decide(ms, parse_policy(text, liars=liars))
        counts[verdict.kind.value] = counts.get(verdict.kind.value, 0) + 1
        problem = None
        if verdict.kind is VerdictKind.INCONSISTENT:
            problem = "honest landmarks INCONSISTENT"
        elif verdict.kind is VerdictKind.VERIFIED and not _allowed(text, lat, lon):
            problem = "false VERIFIED"
        for code in CLAIMS:
            if problem is None and _allowed(f"in:{code}", lat, lon):
                claim = decide(ms, parse_policy("outside:RU", liars=liars), claimed=code)
                if claim.kind is VerdictKind.REFUTED:
                    problem = f"false REFUTED of {code}"
                break
        if problem:
            bad += 1
            print(
                problem,
                lat,
                lon,
                text,
                liars,
                [(m.landmark.lat, m.landmark.lon, m.rtt_ms) for m in ms],
            )
    seconds = time.perf_counter() - start
    print(f"{args.cases} cases, {bad} violations, {counts}, {seconds:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
