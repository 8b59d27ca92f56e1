"""CLI start-up: what a Slurm prolog pays per job per GPU before the gate does any work.

Median wall time of whole processes, runs interleaved so that load on the machine hits each
command alike, each reported as a ratio to `python -c pass` from the same run:

- `lightfence gate check --help` and `lightfence --version` (the console script's own code:
  `from lightfence.cli import main; main()`);
- `import typer, nacl.signing`: the two imports any gate command needs, as a floor.

    python -m bench.startup [--n N] [--compare SRC]

`--compare SRC` adds the same commands run from another source tree (SRC is put first on
PYTHONPATH; e.g. a `git worktree` of an older revision), in the same interleaved runs.
`lightfence version` stands in for `--version` there, as older trees have no flag.
"""

from __future__ import annotations

import argparse
import os
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
COMPARE_CASES: dict[str, list[str]] = {
    "SRC: lightfence version": [*CLI, "version"],
    "SRC: lightfence gate check --help": [*CLI, "gate", "check", "--help"],
}
BASELINE = "python -c pass"


def measure(n: int, compare: str | None = None) -> dict[str, float]:
    """Median seconds per case over `n` interleaved runs (after one warm-up run each)."""
    cases: dict[str, tuple[list[str], dict[str, str] | None]] = {
        name: (argv, None) for name, argv in CASES.items()
    }
    if compare is not None:
        path = os.pathsep.join([compare, os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        cases |= {name: (argv, env) for name, argv in COMPARE_CASES.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(n + 1):
        for name, (argv, case_env) in cases.items():
            start = time.perf_counter()
            subprocess.run(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=case_env, check=True
            )
            if i:  # the first round warms the page cache and the .pyc files
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--n", type=int, default=30, help="runs of each command")
    parser.add_argument("--compare", metavar="SRC", help="another tree's src/ to time alike")
    args = parser.parse_args(argv)
    medians = measure(args.n, args.compare)
    base = medians[BASELINE]
    print(f"median of {args.n} interleaved runs each ({sys.executable})")
    if args.compare:
        print(f"SRC = {args.compare}")
    print(f"{'command':<38} {'median ms':>10} {'x python -c pass':>17}")
    for name, seconds in medians.items():
        print(f"{name:<38} {seconds * 1000:>10.1f} {seconds / base:>17.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
