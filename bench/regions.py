"""outside:CN,HK,MO with China as governed (issue 15) against the land-only region it replaced.

Same fleets as bench.verdicts (10 landmarks per device, RTTs from the fitted latency model),
both regions in the same run on one core: boundary-index size, time to build the region, and
verdicts per second on the fast (far) and precise (near-border) workloads.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time

import numpy as np

from bench.verdicts import FAR_SITES, NEAR_SITES, fleet
from lightfence.core.batch import decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import Policy
from lightfence.geo.governed import Governed
from lightfence.geo.regions import Complement, Countries

CODES = ("CN", "HK", "MO")


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="bench.regions")
    ap.add_argument("--devices", type=int, default=5_000)
    args = ap.parse_args(argv)
    out: dict[str, float] = {}
    policies = {}
    for name, cls in (("land", Countries), ("governed", Governed)):
        start = time.perf_counter()
        region = cls(CODES)
        size = len(region.boundary)
        build = time.perf_counter() - start
        policies[name] = Policy(text="outside:CN,HK,MO", allowed=Complement(region), liars=0)
        out[f"{name}_boundary_vertices"] = size
        out[f"{name}_build_s"] = build
        print(f"{name:9s} region: {size:8,d} boundary vertices, built in {build:5.2f} s")
    for work, sites in (("fast", FAR_SITES), ("precise", NEAR_SITES)):
        table = fleet(sites, args.devices, seed=1)
        rates = {}
        for name, policy in policies.items():
            decide_batch(fleet(sites, 50, seed=2), policy)  # warm the memo
            start = time.perf_counter()
            result = decide_batch(table, policy)
            rates[name] = args.devices / (time.perf_counter() - start)
            share = float(np.mean(result.kind == VerdictKind.VERIFIED.code))
            out[f"{work}_{name}_verdicts_per_s"] = rates[name]
            out[f"{work}_{name}_verified_share"] = share
            print(
                f"{work:8s} {name:9s}: {rates[name]:10,.0f} verdicts/s/core, {share:.1%} VERIFIED"
            )
        out[f"{work}_ratio"] = rates["governed"] / rates["land"]
        print(f"{work:8s} governed / land: x{out[f'{work}_ratio']:.2f}")
    return out


if __name__ == "__main__":
    main()
