"""CLI start-up: what a Slurm prolog pays per job per GPU before the gate does any work.

Median wall time of whole processes, runs interleaved so that load on the machine hits each
command alike, each reported as a ratio to `python -c pass` from the same run:

- `lightfence gate check --help` and `lightfence --version` (the console script's own code:
  `from lightfence.cli import main; main()`);
- `import typer, nacl.signing`: the two imports any gate command needs, as a floor.

    python -m bench.startup [--n N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CLI = [sys.executable, "-c", "from lightfence.cli import main; main()"]
CASES: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import typer, nacl.signing": [sys.executable, "-c", "import typer, nacl.signing"],
    "lightfence --version": [*CLI, "--version"],
    "lightfence gate check --help": [*CLI, "gate", "check", "--help"],
}
BASELINE = "python -c pass"


def measure(n: int) -> dict[str, float]:
    """Median seconds per case over `n` interleaved runs (after one warm-up run each)."""
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for i in range(n + 1):
        for name, argv in CASES.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            if i:  # the first round warms the page cache and the .pyc files
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--n", type=int, default=30, help="runs of each command")
    args = parser.parse_args(argv)
    medians = measure(args.n)
    base = medians[BASELINE]
    print(f"median of {args.n} interleaved runs each ({sys.executable})")
    print(f"{'command':<32} {'median ms':>10} {'x python -c pass':>17}")
    for name, seconds in medians.items():
        print(f"{name:<32} {seconds * 1000:>10.1f} {seconds / base:>17.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
