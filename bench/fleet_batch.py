"""Fleet batch benchmark: the same simulated fleet verified by the local engine and by Ray on 1
and 2 workers, in one run, with the scaling ratio.

    python -m bench.fleet_batch                       # 1,000,000 devices x 10 landmarks, 3 rounds
    python -m bench.fleet_batch --devices 20000 --rounds 1    # a quick look

Ray runs the by-file plan (the simulator's files prove each device lies in one unit, so no
shuffle). Baselines in the same run: the shuffle plan on 2 workers, the engine's plan for
arbitrary input (--no-shuffle-baseline skips it), and the machine's own ceiling for 2 workers:
two plain processes, no Ray, each running the local engine on half the files at once
(`local-2proc`); on a small shared VM two busy cores are not twice one.

Every engine runs once per round, rounds one after the other (Ray restarted for each size), and
the figures are medians over rounds, with the scaling ratio taken within each round: the speed
of a shared VM drifts by tens of percent within minutes. Engine start-up (Ray) and one warm-up
batch per engine (policy regions loaded into every worker: the warm-up fleet is cut into
several units) are timed apart and left out: an hourly job keeps its cluster. The load average
is printed with the figures, because other work on a shared machine skews them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lightfence.core.policy import Policy, parse_policy
from lightfence.fleet.engine_local import MANIFEST, EngineResult, expand_inputs, run_local
from lightfence.fleet.simulate import simulate_fleet, write_fleet

HOURLY_FLEET = 100_000_000
TARGET_DEVICES = 1_000_000
TARGET_SECONDS = 300.0
WARMUP_DEVICES = 2_000
WARMUP_ROWS_PER_FILE = 2_000
"""Ten warm-up files of 200 devices: every Ray worker gets at least one, so all start warm."""


def _row(name: str, cores: int, result: EngineResult, round_no: int) -> dict[str, object]:
    return {
        "round": round_no,
        "engine": name,
        "cores": cores,
        "devices": result.devices,
        "wall_s": result.seconds,
    }


def _timed(label: str, fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    print(f"  {label}: {seconds:.1f} s (not counted)")
    return seconds


def _half_worker(
    files: list[str],
    warm_files: list[str],
    policy_text: str,
    out: str,
    barrier: Any,
    queue: Any,
) -> None:
    """One of the two plain processes: warm up, wait for the other, verify its half."""
    policy = parse_policy(policy_text)
    run_local(warm_files, policy, Path(out + "-warm"))
    barrier.wait()
    t0 = time.time()
    result = run_local(files, policy, Path(out))
    queue.put((t0, time.time(), result.devices, result.rows))


def _two_processes(
    files: list[str], warm_files: list[str], policy: Policy, work: Path
) -> tuple[EngineResult, list[Path]]:
    """The local engine in two processes at once, each on half the files: what 2 cores give
    with no engine in between."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    halves = [files[0::2], files[1::2]]
    outs = [work / f"out-local-2proc-{i}" for i in range(2)]
    procs = [
        ctx.Process(
            target=_half_worker,
            args=(half, warm_files, policy.text, str(out), barrier, queue),
        )
        for half, out in zip(halves, outs, strict=True)
    ]
    for proc in procs:
        proc.start()
    done = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    seconds = max(d[1] for d in done) - min(d[0] for d in done)
    result = EngineResult(
        devices=sum(d[2] for d in done),
        rows=sum(d[3] for d in done),
        seconds=seconds,
        output_files=(),
    )
    return result, outs


def run(
    devices: int,
    landmarks: int,
    seed: int,
    policy: Policy,
    work: Path,
    shuffle_baseline: bool,
    rounds: int,
) -> pd.DataFrame:
    print(f"load average at start: {os.getloadavg()}")
    t0 = time.perf_counter()
    fleet = simulate_fleet(devices, landmarks, seed=seed)
    write_fleet(fleet, work / "fleet")
    warm = simulate_fleet(WARMUP_DEVICES, landmarks, seed=seed + 1)
    write_fleet(warm, work / "warm", rows_per_file=WARMUP_ROWS_PER_FILE)
    print(
        f"simulated {devices} devices x {landmarks} landmarks "
        f"({fleet.measurements.num_rows} rows) in {time.perf_counter() - t0:.1f} s"
    )
    del fleet, warm
    files = expand_inputs(str(work / "fleet" / "measurements"))
    warm_files = expand_inputs(str(work / "warm" / "measurements"))
    from lightfence.fleet.engine_ray import Layout, run_ray, start_ray, stop_ray

    rows: list[dict[str, object]] = []
    _timed("local warm-up", lambda: run_local(warm_files, policy, work / "warm-out"))
    for r in range(1, rounds + 1):
        print(f"round {r} of {rounds}, load average {os.getloadavg()}")
        outputs: dict[str, Path | list[Path]] = {"local": work / "out-local"}
        cpu0 = time.process_time()
        local = run_local(files, policy, work / "out-local")
        cpu_s = time.process_time() - cpu0
        rows.append(_row("local", 1, local, r))
        # CPU time does not grow when other work shares the machine; wall time does.
        print(f"  local: {local.seconds:.1f} s wall, {local.devices / cpu_s:.0f} devices/CPU-s")
        if len(files) >= 2:
            pair, outputs["local-2proc"] = _two_processes(files, warm_files, policy, work)
            rows.append(_row("local-2proc", 2, pair, r))
            print(f"  local, two processes on half the files each: {pair.seconds:.1f} s wall")
        runs = [(1, Layout.AUTO), (2, Layout.AUTO)]
        if shuffle_baseline:
            runs.append((2, Layout.SHUFFLE))
        for workers, layout in runs:
            name = f"ray-{workers}" + ("-shuffle" if layout is Layout.SHUFFLE else "")
            # start_ray restarts Ray only when the number of CPUs changes.
            _timed(f"{name}: ray start", lambda w=workers: start_ray(w))  # type: ignore[misc]
            _timed(
                f"{name}: warm-up",
                lambda w=workers, lay=layout: run_ray(warm_files, policy, work / "w", w, lay),  # type: ignore[misc]
            )
            ray_out = work / f"out-{name}"
            result = run_ray(files, policy, ray_out, workers, layout)
            outputs[name] = ray_out
            rows.append(_row(name, workers, result, r))
            plan = json.loads((ray_out / MANIFEST).read_text(encoding="utf-8"))["engine"]
            print(f"  {name}: {result.seconds:.1f} s wall (plan {plan})")
        reference = _verdicts(outputs["local"])
        for name, out in outputs.items():
            if not _verdicts(out).equals(reference):
                raise SystemExit(f"engine {name} disagrees with the local engine")
        print(f"  all engines gave identical verdicts ({len(reference)} devices)")
    stop_ray()
    print(f"load average at end: {os.getloadavg()}")
    return pd.DataFrame(rows)


def _verdicts(out: Path | list[Path]) -> pd.DataFrame:
    columns = ["device_id", "verdict", "n_landmarks"]
    parts = out if isinstance(out, list) else [out]
    frame = pd.concat([pd.read_parquet(p, columns=columns) for p in parts], ignore_index=True)
    frame["verdict"] = frame["verdict"].astype(str)
    return frame.sort_values("device_id").reset_index(drop=True)


def report(rows: pd.DataFrame) -> None:
    by_round = rows.pivot(index="round", columns="engine", values="wall_s")
    devices = int(rows["devices"].iloc[0])
    cores = rows.groupby("engine")["cores"].first()
    wall = by_round.median()
    table = pd.DataFrame(
        {
            "cores": cores,
            "wall_s_median": wall.round(1),
            "wall_s_range": [
                f"{by_round[e].min():.1f}-{by_round[e].max():.1f}" for e in wall.index
            ],
            "devices_per_s": (devices / wall).round(),
            "devices_per_s_per_core": (devices / wall / cores).round(),
        }
    )
    print()
    print(f"{devices} devices, {len(by_round)} round(s); medians over rounds")
    print(table.to_string())
    scaling = by_round["ray-1"] / by_round["ray-2"]
    print(
        f"scaling ray 1 -> 2 workers, per round: {', '.join(f'{x:.2f}' for x in scaling)}x; "
        f"median {scaling.median():.2f}x (2.00x is linear)"
    )
    if "local-2proc" in by_round:
        ceiling = by_round["local"] / by_round["local-2proc"]
        print(
            f"machine ceiling, two plain processes vs one, per round: "
            f"{', '.join(f'{x:.2f}' for x in ceiling)}x; median {ceiling.median():.2f}x"
        )
    if "ray-2-shuffle" in by_round:
        gain = by_round["ray-2-shuffle"] / by_round["ray-2"]
        print(f"ray 2 workers, by-file vs shuffle plan: median {gain.median():.2f}x")
    best = str(wall.idxmin())
    one_million = TARGET_DEVICES / (devices / float(wall[best]))
    verdict = "met" if one_million < TARGET_SECONDS else "not met"
    print(
        f"fastest ({best}): {TARGET_DEVICES:,} devices in {one_million:.0f} s at this rate "
        f"(target {TARGET_SECONDS:.0f} s: {verdict})"
    )
    per_core = devices / float(wall["local"])
    print(
        f"one core at the local rate: {3600 * per_core:,.0f} devices an hour; "
        f"{HOURLY_FLEET:,} devices hourly need {HOURLY_FLEET / 3600 / per_core:,.1f} cores "
        "busy (before headroom)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--landmarks", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", default="outside:CN,HK,MO")
    parser.add_argument(
        "--no-shuffle-baseline",
        dest="shuffle_baseline",
        action="store_false",
        help="skip the Ray shuffle plan on 2 workers (the baseline)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of every engine")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lightfence-bench-") as tmp:
        table = run(
            args.devices,
            args.landmarks,
            args.seed,
            parse_policy(args.policy),
            Path(tmp),
            args.shuffle_baseline,
            args.rounds,
        )
    report(table)


if __name__ == "__main__":
    main()
