"""Landmark throughput, this tree against a git revision: both at once on one CPU.

This VM's speed switches between two states every few seconds, so two landmarks measured one
after the other differ by ±30 % for no reason in the code. Here the two landmarks (this working
tree's, and `--base`'s checked out into a temporary git worktree) run at the same time, pinned to
the same CPU, each loaded by its own generator process (this tree's bench.load_generator) on
the other CPU: every speed change hits both. Each pair reports rounds per landmark CPU-second of
both; the order of start-up alternates between pairs, since the first started does a little
better, and the summary is the geometric mean of the pairs' ratios.

    python -m bench.landmark_ab --base REV [--pairs 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.landmark_process import AGENT_CPU, LANDMARK_CPU

REPO = Path(__file__).resolve().parent.parent
SLOTS = 48

_SERVE = """
import asyncio, hashlib, json, os, sys, time
os.sched_setaffinity(0, {%(cpu)d})
from lightfence.crypto.keys import SigningKey
from lightfence.landmark.server import LandmarkServer
from lightfence.protocol.landmark_session import LandmarkConfig, LandmarkEndpoint
key = SigningKey.from_seed(hashlib.sha256(b"ab").digest())
cfg = LandmarkConfig("ab", hello_rate_per_s=1e9, hello_burst=10**9, max_sessions=4096)
endpoint = LandmarkEndpoint(cfg, key)
server = LandmarkServer.bind(endpoint, "127.0.0.1", 0, "auto")
print(server.address[1], flush=True)
def report():
    sys.stdin.readline()
    print(json.dumps({"cpu_s": time.process_time() - cpu0,
                      "rounds": endpoint.stats.rounds_answered}), flush=True)
    os._exit(0)  # the figures are out; the sessions left in flight do not matter
async def main():
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), report)
    await server.serve(asyncio.Event())
cpu0 = time.process_time()
asyncio.run(main())
"""

_LOAD = """
import os
os.sched_setaffinity(0, {%(cpu)d})
from bench.load_generator import saturate
from lightfence.model.registry import LandmarkEntry
from lightfence.crypto.keys import SigningKey
import hashlib
key = SigningKey.from_seed(hashlib.sha256(b"ab").digest())
saturate(LandmarkEntry("ab", key.public_bytes, 0.0, 0.0, 0.0, "127.0.0.1:%(port)d"), %(s)f, %(n)d)
"""


def _landmark(src: Path) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE % {"cpu": LANDMARK_CPU}],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _stop(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    stats = json.loads(proc.stdout.readline())
    proc.wait(10)
    return float(stats["rounds"]) / max(float(stats["cpu_s"]), 1e-9)


def pair(trees: list[Path], seconds: float) -> list[float]:
    """Rounds per landmark CPU-second of each tree's landmark, run side by side."""
    started = [_landmark(src) for src in trees]
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    code = [_LOAD % {"cpu": AGENT_CPU, "port": p, "s": seconds, "n": SLOTS} for _, p in started]
    load = [subprocess.Popen([sys.executable, "-c", c], env=env) for c in code]
    for proc in load:
        proc.wait()
    return [_stop(proc) for proc, _ in started]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lightfence-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            trees, ratios = [base / "src", REPO / "src"], []
            print(f"base {args.base} against this tree, {args.pairs} pairs of {args.seconds:g} s")
            for i in range(args.pairs):
                order = trees if i % 2 == 0 else trees[::-1]
                figures = dict(zip(order, pair(order, args.seconds), strict=True))
                old, new = figures[trees[0]], figures[trees[1]]
                ratios.append(new / old)
                first = "base" if order[0] == trees[0] else "this tree"
                print(
                    f"  pair {i + 1} ({first} started first): base {old:,.0f}, this tree "
                    f"{new:,.0f} rounds per landmark CPU-s, ratio {new / old:.3f}",
                    flush=True,
                )
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                check=False,
                capture_output=True,
            )
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"  this tree / base, geometric mean of {len(ratios)} pairs: {geo:.3f}")


if __name__ == "__main__":
    main()
