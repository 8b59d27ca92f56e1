"""`make bench`: run every benchmark; figures go to docs/benchmarks.md.

`python -m bench` runs all; `python -m bench NAME ...` runs the named ones.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time

BENCHMARKS = ["verdicts", "coverage"]


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
