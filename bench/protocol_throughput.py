"""Landmark throughput: challenge rounds per second per landmark core, signature checks on.

A load generator (bench.load_generator) runs many concurrent real agent sessions (10 rounds
each) against a landmark server in its own process, enough to keep the landmark saturated
where the machine allows. The landmark's CPU seconds are read in that process, so the figure
is rounds answered per landmark CPU-second, independent of how fast the generator can sign.
Signature checks are on as deployed: the landmark checks the device's signature of each
session's fastest round (and of any faster round, which a forger would have to answer) and
signs every record. A second capacity run with `check_every_round` on checks all k rounds.

Then, in the same run, the timing probe of bench.protocol_timing measures the landmark's timing
overhead (vs a bare kernel-timestamped echo) idle and again with the generator held at half
the measured capacity (or the most it can offer on this machine). Target (issue 3):
>= 10,000 rounds/s per core, overhead unchanged at half that load.

    python -m bench.protocol_throughput [--seconds S] [--concurrency N] [--trials T]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from bench.landmark_process import AGENT_CPU, bench_key, pin, start_landmark
from bench.load_generator import saturate
from bench.protocol_timing import ProbeResult, signing_time_us, start_probe, summarize
from lightfence.agent.measure import run_session
from lightfence.crypto.identity import software_identity
from lightfence.crypto.keys import verify_signature
from lightfence.landmark.registry import LandmarkEntry
from lightfence.protocol.agent_session import AgentSession

ROUNDS = 10
OPEN: dict[str, Any] = {"hello_rate_per_s": 1e9, "hello_burst": 10**9, "max_sessions": 4096}


async def generate(
    entry: LandmarkEntry,
    seconds: float,
    concurrency: int,
    rounds_per_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> tuple[int, int]:
    """Run sessions for `seconds`; paced to `rounds_per_s` if given. Returns (rounds, records)."""
    key = bench_key("load-device")
    ident = software_identity(key)
    host, port = entry.host_port()
    deadline = time.monotonic() + seconds
    done = [0, 0]
    interval = None if rounds_per_s is None else ROUNDS * concurrency / rounds_per_s

    async def worker(i: int) -> None:
        next_start = time.monotonic() + (interval or 0) * i / concurrency
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            if interval is not None:
                await asyncio.sleep(max(0.0, next_start - time.monotonic()))
                next_start += interval
            s = AgentSession(key, ident, entry.id, entry.public_key, ROUNDS)
            await run_session(s, host, port, timeout_s=5.0)
            if s.record is not None:
                done[0] += len(s.record.rtts_ns)
                done[1] += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done[0], done[1]


def verify_time_us(n: int = 2000) -> float:
    """Median time of one Ed25519 signature check here: the floor under a round's cost."""
    key = bench_key("v")
    msg = bytes(120)
    sig = key.sign(msg)
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        verify_signature(key.public_bytes, sig, msg)
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples) / 1e3


def capacity(seconds: float, concurrency: int, check_every_round: bool = False) -> dict[str, Any]:
    lm = start_landmark("tput", **OPEN, check_every_round=check_every_round)
    pin(AGENT_CPU)  # the landmark holds the other CPU
    t0 = time.monotonic()
    rounds, records = saturate(lm.entry, seconds, concurrency)
    wall = time.monotonic() - t0
    stats = lm.stop()
    verify_us = verify_time_us()
    per_round_us = stats["cpu_s"] / max(stats["rounds_answered"], 1) * 1e6
    return {
        "landmark_cpu_s": stats["cpu_s"],
        "rounds_answered": stats["rounds_answered"],
        "records_issued": stats["records_issued"],
        "rounds_per_landmark_cpu_s": stats["rounds_answered"] / max(stats["cpu_s"], 1e-9),
        "offered_rounds_per_wall_s": rounds / wall,
        "landmark_cpu_us_per_round": per_round_us,
        "ed25519_verify_alone_us": verify_us,
        "share_of_landmark_cpu_in_signature_checks": _checks(stats)
        * verify_us
        / max(stats["cpu_s"] * 1e6, 1e-9),
        "rejected": stats["rejected"],
        "generator_records": records,
    }


def _checks(stats: dict[str, Any]) -> int:
    """Device-signature checks the landmark made: one per record, one per forged round."""
    forged = int(stats["rejected"].get("bad_signature", 0))
    if stats.get("check_every_round"):
        return int(stats["rounds_answered"])
    return int(stats["records_issued"]) + forged


def overhead_under_load(rate: float, trials: int, concurrency: int) -> dict[str, Any]:
    lm = start_landmark("probe", **OPEN)
    try:
        proc, conn = start_probe(lm.entry, trials)
        idle: ProbeResult = conn.recv()
        proc.join(10)

        async def loaded() -> tuple[ProbeResult, tuple[int, int], float]:
            proc2, conn2 = start_probe(lm.entry, trials)
            t0 = time.monotonic()
            stop = asyncio.Event()
            gen = asyncio.ensure_future(generate(lm.entry, 3600, concurrency, rate, stop))
            result: ProbeResult = await asyncio.to_thread(conn2.recv)
            wall = time.monotonic() - t0
            stop.set()
            counts = await gen
            proc2.join(10)
            return result, counts, wall

        under, counts, wall = asyncio.run(loaded())
    finally:
        stats = lm.stop()
    sign = signing_time_us()
    return {
        "background_rate_target": rate,
        "background_rate_achieved": counts[0] / wall,
        "idle": summarize(idle, sign),
        "loaded": summarize(under, sign),
        "landmark_rounds_total": stats["rounds_answered"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()}")
    cap = capacity(args.seconds, args.concurrency)
    every = capacity(args.seconds, args.concurrency, check_every_round=True)
    for title, figures in (("as deployed", cap), ("check_every_round on", every)):
        print(f"landmark throughput, {title} ({os.cpu_count()} CPUs; landmark is one process)")
        for k, v in figures.items():
            print(f"  {k:42s} {v:,.1f}" if isinstance(v, float) else f"  {k:42s} {v}")
    per_core = cap["rounds_per_landmark_cpu_s"]
    print(f"  target >= 10,000 rounds/s per core: {'met' if per_core >= 10_000 else 'NOT met'}")
    half = min(per_core, 10_000) / 2
    load = overhead_under_load(half, args.trials, args.concurrency)
    print(
        f"timing overhead idle vs background load (target {half:,.0f} rounds/s, achieved "
        f"{load['background_rate_achieved']:,.0f}), net of the device's answer time:"
    )
    for phase in ("idle", "loaded"):
        r = load[phase]
        print(
            f"  {phase:6s} median {r['overhead_net_of_device_answer_median_us']:8.1f} us   "
            f"p99 {r['overhead_net_of_device_answer_p99_us']:8.1f} us   "
            f"(raw median {r['overhead_median_us']:.1f} us, "
            f"device answer {r['device_answer_fastest_round_median_us']:.1f} us)"
        )


if __name__ == "__main__":
    main()
