"""Landmark throughput: challenge rounds per second per landmark core, signature checks on.

A load generator (bench.load_generator) runs many concurrent real agent sessions (10 rounds
each) against a landmark server in its own process, pinned to the other CPU. The landmark's CPU
seconds are read in its process, so the figure is rounds answered per landmark CPU-second,
independent of how fast the generator can sign. Where the generator cannot keep the landmark
busy, the landmark sleeps between batches and wakes more often per round, which only adds CPU
per round: the figure then understates the capacity of a landmark that is kept busy. The
landmark's busy share is printed with each trial.

Signature checks are on as deployed: the landmark checks the device's signature of each
session's fastest round (and of any faster round, which a forger would have to answer) and
signs every record. A second capacity run with `check_every_round` on checks all k rounds.

This VM's speed switches between two states every few seconds (one Ed25519 check takes about 60
or about 95 us, with nothing else running), so capacity is measured in several short trials,
each with the Ed25519 check time measured right after it, and judged on the median.

Then, in the same run, the timing probe of bench.protocol_timing measures the landmark's timing
overhead (vs a bare kernel-timestamped echo) idle and again with the generator, in its own
process, offering half the target rate. Target (issue 3): >= 10,000 rounds/s per core, overhead
unchanged at half that load.

    python -m bench.protocol_throughput [--seconds S] [--trials-capacity N] [--trials T]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from multiprocessing.synchronize import Event
from typing import Any

from bench.landmark_process import AGENT_CPU, CTX, bench_key, pin, start_landmark
from bench.load_generator import saturate
from bench.protocol_timing import ProbeResult, signing_time_us, start_probe, summarize
from lightfence.crypto.keys import verify_signature
from lightfence.model.registry import LandmarkEntry

ROUNDS = 10
SLOTS = 64
"""Sessions the generator keeps in flight."""
TARGET_ROUNDS_PER_S = 10_000
OPEN: dict[str, Any] = {"hello_rate_per_s": 1e9, "hello_burst": 10**9, "max_sessions": 4096}


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


def capacity(seconds: float, check_every_round: bool = False) -> dict[str, Any]:
    """One trial: a fresh landmark loaded by the generator for `seconds`."""
    lm = start_landmark("tput", **OPEN, check_every_round=check_every_round)
    pin(AGENT_CPU)  # the landmark holds the other CPU
    before = lm.stats()  # start-up is not a round's cost
    t0 = time.monotonic()
    saturate(lm.entry, seconds, SLOTS)
    wall = time.monotonic() - t0
    after = lm.stats()
    lm.stop()
    verify_us = verify_time_us()
    cpu_s = after["cpu_s"] - before["cpu_s"]
    rounds = after["rounds_answered"] - before["rounds_answered"]
    stats = {
        "rounds_answered": rounds,
        "records_issued": after["records_issued"] - before["records_issued"],
        "rejected": after["rejected"],
        "check_every_round": check_every_round,
    }
    return {
        "rounds_per_landmark_cpu_s": rounds / max(cpu_s, 1e-9),
        "landmark_busy_share": cpu_s / wall,
        "rounds_per_wall_s": rounds / wall,
        "landmark_cpu_us_per_round": cpu_s / max(rounds, 1) * 1e6,
        "ed25519_verify_alone_us": verify_us,
        "share_of_landmark_cpu_in_signature_checks": _checks(stats)
        * verify_us
        / max(cpu_s * 1e6, 1e-9),
        "rejected": stats["rejected"],
    }


def capacity_trials(seconds: float, trials: int, check_every_round: bool = False) -> float:
    """Run `trials` capacity trials, print each; return the median rounds per CPU-second."""
    title = "check_every_round on" if check_every_round else "as deployed"
    print(f"landmark throughput, {title} ({trials} trials of {seconds:g} s)", flush=True)
    figures: list[float] = []
    for i in range(trials):
        c = capacity(seconds, check_every_round)
        figures.append(c["rounds_per_landmark_cpu_s"])
        print(
            f"  trial {i + 1}: {c['rounds_per_landmark_cpu_s']:9,.0f} rounds per landmark "
            f"CPU-s  ({c['landmark_cpu_us_per_round']:.1f} us a round; landmark busy "
            f"{c['landmark_busy_share']:.0%}; Ed25519 check {c['ed25519_verify_alone_us']:.1f}"
            f" us; checks {c['share_of_landmark_cpu_in_signature_checks']:.0%} of its CPU; "
            f"rejected {c['rejected'] or 0})",
            flush=True,
        )
    median = statistics.median(figures)
    print(f"  median {median:,.0f}, min {min(figures):,.0f}, max {max(figures):,.0f}")
    return float(median)


def _checks(stats: dict[str, Any]) -> int:
    """Device-signature checks the landmark made: one per record, one per forged round."""
    forged = int(stats["rejected"].get("bad_signature", 0))
    if stats.get("check_every_round"):
        return int(stats["rounds_answered"])
    return int(stats["records_issued"]) + forged


def _paced_generator(entry: dict[str, object], rate: float, stop: Event) -> None:
    # Not pinned: on its own CPU beside the probe it cannot offer the full rate here, and the
    # far-end figures take any delay it causes the probe's device or the echo out anyway.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))  # undo the parent's pinning
    saturate(LandmarkEntry.from_json_dict(entry), 3600.0, SLOTS, paced=rate, stop=stop)


def overhead_under_load(rate: float, trials: int) -> dict[str, Any]:
    """The timing probe against one landmark: idle, then with `rate` rounds/s offered by the
    generator in its own process. The achieved rate is counted by the landmark itself."""
    lm = start_landmark("probe", **OPEN)
    try:
        proc, conn = start_probe(lm.entry, trials)
        idle: ProbeResult = conn.recv()
        proc.join(10)
        stop = CTX.Event()
        gen = CTX.Process(target=_paced_generator, args=(lm.entry.to_json_dict(), rate, stop))
        gen.start()
        time.sleep(1.0)  # let the background load settle before the probe starts
        before, t0 = lm.stats(), time.monotonic()
        proc2, conn2 = start_probe(lm.entry, trials)
        under: ProbeResult = conn2.recv()
        after, wall = lm.stats(), time.monotonic() - t0
        stop.set()
        gen.join(10)
        proc2.join(10)
    finally:
        lm.stop()
    sign = signing_time_us()
    probe_rounds = ROUNDS * trials
    background = after["rounds_answered"] - before["rounds_answered"] - probe_rounds
    return {
        "background_rate_target": rate,
        "background_rate_achieved": background / wall,
        "idle": summarize(idle, sign),
        "loaded": summarize(under, sign),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per capacity trial")
    parser.add_argument("--trials-capacity", type=int, default=5)
    parser.add_argument("--trials", type=int, default=100, help="timing probe trials")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs")
    median = capacity_trials(args.seconds, args.trials_capacity)
    verdict = "met" if median >= TARGET_ROUNDS_PER_S else "NOT met"
    print(f"  target >= {TARGET_ROUNDS_PER_S:,} rounds/s per core (median): {verdict}")
    capacity_trials(args.seconds, max(1, args.trials_capacity // 2), check_every_round=True)
    half = TARGET_ROUNDS_PER_S / 2
    load = overhead_under_load(half, args.trials)
    print(
        f"timing overhead idle vs background load (offered {half:,.0f} rounds/s, the landmark "
        f"answered {load['background_rate_achieved']:,.0f}/s besides the probe):"
    )
    for phase in ("idle", "loaded"):
        r = load[phase]
        print(
            f"  {phase:6s} net of the far ends: median "
            f"{r['overhead_net_of_far_ends_median_us']:5.1f} us, p99 "
            f"{r['overhead_net_of_far_ends_p99_us']:5.1f} us | net of the device's answer: "
            f"median {r['overhead_net_of_device_answer_median_us']:5.1f} us, p99 "
            f"{r['overhead_net_of_device_answer_p99_us']:5.1f} us | raw median "
            f"{r['overhead_median_us']:.1f} us, device turnaround "
            f"{r['device_turnaround_fastest_round_median_us']:.1f} us, kernel-timed records "
            f"{r['kernel_timed_records']}/{r['trials']}"
        )


if __name__ == "__main__":
    main()
