"""Landmark under a spoofed HELLO flood, and the bytes a forged source draws: this tree against
a git revision (default `main`), in the same run.

Per tree, every process its own (bench/flood_roles.py, run with that tree's `src` first):

1. Amplification: one HELLO from a socket that reads and never answers (the victim of a forged
   source address): bytes received / bytes sent, for 10 rounds and for `max_rounds = 64`
   (rounds of 50 ms, so the old protocol's full retransmission run fits in seconds; the byte
   count does not depend on it). With a RETRY, also a peer that echoes the cookie and then
   answers nothing.
2. Flood: a landmark with its default settings; `--rate` cookieless HELLOs per second from
   `--sources` sockets bound to 127.0.0.2, 127.0.0.3, ... (never reading a reply, as a forged
   source cannot); after 1.5 s, `--honest` honest sessions (`--slots` at a time, one attempt
   each, `--timeout` s), each from its own address (127.0.1.1 onwards). Reports the fraction
   that got a verified record.

Bounded: each flood stops after the honest sessions end or `--max-seconds`, whichever first.
Exit status 1 unless this tree completes at least 99 % of honest sessions under the flood and
never sends a forged source more bytes than it was sent.

    python -m bench.landmark_flood [--base main] [--rate 10000] [--sources 64] [--honest 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ROLES = Path(__file__).resolve().parent / "flood_roles.py"
AMPLIFY_ROUND_MS = 50


def _spawn(src: Path, *args: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.Popen(
        [sys.executable, str(ROLES), *map(str, args)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args!r} ended without a result (exit {proc.wait()})")
    out: dict[str, Any] = json.loads(line)
    return out


def _stop(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdin is not None
    try:
        proc.stdin.write("stop\n")
        proc.stdin.flush()
    except BrokenPipeError:
        pass  # it stopped by itself (a flood past --max-seconds): its line is there to read
    out = _line(proc)
    proc.wait(10)
    return out


def _run(src: Path, *args: object) -> dict[str, Any]:
    proc = _spawn(src, *args)
    out = _line(proc)
    proc.wait(30)
    return out


def amplification(src: Path) -> list[dict[str, Any]]:
    lm = _spawn(src, "landmark", 64, AMPLIFY_ROUND_MS)
    try:
        port = _line(lm)["port"]
        return [
            _run(src, "amplify", port, rounds, (rounds + 2) * AMPLIFY_ROUND_MS / 1000 + 0.5)
            for rounds in (10, 64)
        ]
    finally:
        _stop(lm)


def flood_run(src: Path, args: argparse.Namespace) -> dict[str, Any]:
    lm = _spawn(src, "landmark", 10, 1000)
    flood: subprocess.Popen[str] | None = None
    try:
        port = _line(lm)["port"]
        flood = _spawn(src, "flood", port, args.rate, args.sources, args.max_seconds)
        time.sleep(1.5)  # the old landmark's session table fills in about a second
        honest = _run(src, "honest", port, args.honest, args.slots, args.timeout)
        offered = _stop(flood)
        flood = None
    finally:
        if flood is not None:
            _stop(flood)
        stats = _stop(lm)
    return {"honest": honest, "flood": offered, "landmark": stats}


def _ratio(d: dict[str, Any]) -> float:
    return float(d["bytes_out"]) / float(d["bytes_in"])


def report(name: str, amp: list[dict[str, Any]], fl: dict[str, Any]) -> tuple[float, float]:
    h, f, lm = fl["honest"], fl["flood"], fl["landmark"]
    frac = h["completed"] / max(h["sessions"], 1)
    print(f"{name}:")
    worst = 0.0
    for a in amp:
        u = a["unanswered"]
        worst = max(worst, _ratio(u))
        line = (
            f"  unanswered HELLO, {a['rounds']} rounds: {u['bytes_in']} B in, "
            f"{u['bytes_out']} B out in {u['datagrams_out']} datagram(s): x{_ratio(u):.3f}"
        )
        if "cookie_then_silent" in a:
            c = a["cookie_then_silent"]
            worst = max(worst, _ratio(c))
            line += (
                f"; cookie echoed then silent: {c['bytes_in']} B in, {c['bytes_out']} B out: "
                f"x{_ratio(c):.3f}"
            )
        print(line)
    print(
        f"  flood: {f['sent']:,} HELLOs in {f['seconds']:.1f} s "
        f"({f['sent'] / max(f['seconds'], 1e-9):,.0f}/s offered, {f['send_dropped']:,} not "
        f"sent: socket buffer full)"
    )
    print(
        f"  honest sessions completed: {h['completed']} of {h['sessions']} ({100 * frac:.1f} %)"
        f" in {h['seconds']:.1f} s; failures {h['failures'] or 'none'}"
    )
    print(
        f"  landmark: {lm['datagrams_received']:,} datagrams, {lm['sessions_opened']:,} sessions"
        f" opened, {lm['records_issued']:,} records, {lm['retries_sent']:,} RETRYs, "
        f"{lm['cpu_s']:.1f} CPU-s, rejected {lm['rejected']}",
        flush=True,
    )
    return frac, worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision to compare with ('' none)")
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--sources", type=int, default=64)
    parser.add_argument("--honest", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not 1 <= args.sources <= 250:
        parser.error("--sources must be 1 to 250 (127.0.0.2 onwards)")
    print(
        f"flood: {args.rate:,.0f} HELLO/s from {args.sources} sources; {args.honest} honest "
        f"sessions, {args.slots} at a time, {args.timeout:g} s each"
    )
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lightfence-flood-") as tmp:
        trees = [("this tree", REPO / "src")]
        if args.base:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.base, "src"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            trees.insert(0, (f"base {args.base}", Path(tmp) / "src"))
        for name, src in trees:
            results[name] = report(name, amplification(src), flood_run(src, args))
    frac, worst = results["this tree"]
    ok = frac >= 0.99 and worst <= 1.0
    print(
        f"{'PASS' if ok else 'FAIL'}: this tree completed {100 * frac:.1f} % of honest sessions "
        f"under the flood (target >= 99 %), worst bytes out / in for a silent source x{worst:.3f}"
        " (target <= 1)"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
