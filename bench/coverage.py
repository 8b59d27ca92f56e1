"""Coverage map and planner timing: a whole-world map with 250 landmarks, and one planner step.

Baseline in the same run: one pass of the verdict engine over every land cell at the median
network (what a map without the slack would cost). The map costs 3 + BISECTION_STEPS such passes
at most; the ratio says what the slack costs.

    PYTHONPATH=src python -m bench.coverage
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lightfence.core.policy import parse_policy
from lightfence.coverage.grid import DEFAULT_RESOLUTION, land_grid
from lightfence.coverage.inputs import Places, shipped_datacentre_cities, shipped_landmarks
from lightfence.coverage.model import evaluate, nearest_landmarks, quantile_rtt_ms, verified
from lightfence.coverage.planner import plan

LANDMARKS = 250
PLANNER_BUDGET = 3


def _landmarks_250() -> Places:
    """The 239 shipped landmarks plus the first 11 data-centre cities."""
    base = shipped_landmarks()
    extra = shipped_datacentre_cities().take(range(LANDMARKS - len(base)))
    return base.concat(extra)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="bench.coverage")
    ap.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION)
    ap.add_argument("--budget", type=int, default=PLANNER_BUDGET)
    args = ap.parse_args(argv)
    figures: dict[str, float] = {}
    lms = _landmarks_250()
    t0 = time.perf_counter()
    grid = land_grid(args.resolution)
    print(
        f"grid: H3 resolution {args.resolution}, {len(grid)} land cells, "
        f"built in {time.perf_counter() - t0:.1f} s (includes loading Natural Earth)"
    )
    for text in ("outside:CN,HK,MO", "in-declared-country"):
        policy = parse_policy(text)
        t0 = time.perf_counter()
        nb = nearest_landmarks(grid.lat, grid.lon, lms, 8)
        verified(lms, nb, quantile_rtt_ms(nb, 0.5), policy, grid.country)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        cov = evaluate(grid.lat, grid.lon, grid.country, lms, policy)
        full = time.perf_counter() - t0
        figures[f"map_s[{text}]"] = full
        figures[f"one_pass_s[{text}]"] = one
        print(
            f"{text}: one engine pass {one:.1f} s; full map with slack {full:.1f} s "
            f"({full / one:.1f}x); {cov.share:.1%} of cells verifiable"
        )
    sites = shipped_datacentre_cities()
    policy = parse_policy("in-declared-country")
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(_: object) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    t0 = time.perf_counter()
    result = plan(sites, lms, sites, policy, args.budget, on_step=tick)
    total = time.perf_counter() - t0
    per = float(np.mean(times)) if times else float("nan")
    figures["planner_step_s"] = per
    print(
        f"planner: {len(sites)} sites x {len(sites)} candidates, {len(result.steps)} steps in "
        f"{total:.1f} s, {per:.1f} s per step (first includes the before-verdicts)"
    )
    return figures


if __name__ == "__main__":
    main()
