"""`make bench`: run every benchmark; figures go to docs/benchmarks.md.

`python -m bench` runs all; `python -m bench NAME ...` runs the named ones. Comparisons with an
earlier revision run on their own: `python -m bench.landmark_ab --base REV` (landmark
throughput, both landmarks side by side), `python -m bench.verifier_junk --base REV` (database
growth per junk record, both trees fed the same junk), and the fresh-clone install benchmark
(`python -m bench.install --baseline REV`: it downloads a few hundred megabytes).
"""

from __future__ import annotations

import importlib
import platform
import sys
import time

BENCHMARKS = [
    "verdicts",  # issue 2: verdicts/s/core, fast and precise paths, vs a naive shapely baseline
    "reference_geometry",  # issue 15: VERIFIED vs an exact WGS84 reference; throughput vs base
    "regions",  # issue 15: outside:CN,HK,MO as governed vs the land-only region, same run
    "protocol_timing",  # issue 3: landmark RTT overhead vs a bare kernel-timestamped echo
    "protocol_throughput",  # issue 3: challenge rounds/s per landmark core, signatures on
    "datagram_soak",  # issue 3: a million hostile datagrams, no crash, bounded memory
    "landmark_flood",  # issue 17: spoofed HELLO flood and amplification, vs main
    "verifier_ingest",  # issue 4: records/s on SQLite (and PostgreSQL with --pg), recompute rate
    "emulation",  # issue 5: the emulated geography's own added delay
    "coverage",  # issue 7: global coverage map and planner step
    "gate_check",  # issue 8: token checks vs a bare signature check
    "robust_timing",  # issue 9: robust engine (f = 1, 2, auto) vs the plain engine (f = 0)
    "verifier_blame",  # issue 9: recompute with every device INCONSISTENT vs an honest fleet
    "gpu_rounds",  # issue 16: GPU evidence appraisal and GPU-round verdicts vs the key-only path
    "verifier_gpu",  # issue 16: GPU rounds in the verifier service vs key records, same run
    "stream_signed",  # issue 22: signed records via Kafka to PostgreSQL, per core, 1 -> 2 workers
    "fleet_batch",  # issue 6: 1,000,000 devices x 10 landmarks, local vs Ray on 1 and 2 workers
    "startup",  # issue 19: `lightfence gate check --help`, `--version` vs `python -c pass`
]


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    print(
        f"# lightfence benchmarks — {platform.node()}, {platform.processor() or platform.machine()}"
    )
    for name in names:
        print(f"\n## {name}")
        start = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        module.main([])
        print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
