"""Fleet batch benchmark: the same simulated fleet verified by the local engine and by Ray on 1
and 2 workers, in one run, with the scaling ratio.

    python -m bench.fleet_batch                       # 1,000,000 devices x 10 landmarks
    python -m bench.fleet_batch --devices 20000       # a quick look

Ray runs the by-file plan (the simulator's files prove each device lies in one unit, so no
shuffle); the shuffle plan on 2 workers, the engine's plan for arbitrary input, is timed too, as
the baseline in the same run (--no-shuffle-baseline skips it). Engine start-up (Ray) and one
warm-up batch per engine (policy regions loaded into every worker: the warm-up fleet is cut into
several units) are timed apart and left out of the batch figures: an hourly job keeps its
cluster. The machine's load average is printed with the figures, because other work on a shared
machine skews them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


def _row(name: str, cores: int, result: EngineResult) -> dict[str, object]:
    rate = result.devices / result.seconds
    return {
        "engine": name,
        "cores": cores,
        "devices": result.devices,
        "wall_s": round(result.seconds, 1),
        "devices_per_s": round(rate),
        "devices_per_s_per_core": round(rate / cores),
    }


def _timed(label: str, fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    print(f"  {label}: {seconds:.1f} s (not counted)")
    return seconds


def run(
    devices: int, landmarks: int, seed: int, policy: Policy, work: Path, shuffle_baseline: bool
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
    rows = []

    print("local engine (one process)")
    _timed("warm-up", lambda: run_local(warm_files, policy, work / "warm-out"))
    cpu0 = time.process_time()
    local = run_local(files, policy, work / "out-local")
    cpu_s = time.process_time() - cpu0
    rows.append(_row("local", 1, local))
    # CPU time does not grow when other work shares the machine; wall time does.
    print(f"  local engine CPU time {cpu_s:.1f} s: {local.devices / cpu_s:.0f} devices per CPU-s")
    print(f"  {rows[-1]}")

    from lightfence.fleet.engine_ray import Layout, run_ray, start_ray, stop_ray

    outputs = {"local": work / "out-local"}
    runs = [(1, Layout.AUTO), (2, Layout.AUTO)]
    if shuffle_baseline:
        runs.append((2, Layout.SHUFFLE))
    for workers, layout in runs:
        name = f"ray-{workers}" + ("-shuffle" if layout is Layout.SHUFFLE else "")
        print(f"{name}: ray, {workers} worker(s), layout {layout.value}")
        # start_ray restarts Ray only when the number of CPUs changes.
        _timed("ray start", lambda w=workers: start_ray(w))  # type: ignore[misc]
        _timed(
            "warm-up",
            lambda w=workers, lay=layout: run_ray(warm_files, policy, work / "warm-out", w, lay),  # type: ignore[misc]
        )
        out = work / f"out-{name}"
        result = run_ray(files, policy, out, workers, layout)
        outputs[name] = out
        rows.append(_row(name, workers, result))
        plan = json.loads((out / MANIFEST).read_text(encoding="utf-8"))["engine"]
        print(f"  {rows[-1]} (plan {plan})")
    stop_ray()

    reference = _verdicts(outputs["local"])
    for name, out in outputs.items():
        if not _verdicts(out).equals(reference):
            raise SystemExit(f"engine {name} disagrees with the local engine")
    print("all engines gave identical verdicts")
    print(f"load average at end: {os.getloadavg()}")
    return pd.DataFrame(rows)


def _verdicts(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out, columns=["device_id", "verdict", "n_landmarks"])
    frame["verdict"] = frame["verdict"].astype(str)
    return frame.sort_values("device_id").reset_index(drop=True)


def report(table: pd.DataFrame) -> None:
    print()
    print(table.to_string(index=False))
    by = table.set_index("engine")
    scaling = by.loc["ray-2", "devices_per_s"] / by.loc["ray-1", "devices_per_s"]
    print(f"scaling ray 1 -> 2 workers: {scaling:.2f}x (2.00x is linear)")
    if "ray-2-shuffle" in by.index:
        gain = by.loc["ray-2", "devices_per_s"] / by.loc["ray-2-shuffle", "devices_per_s"]
        print(f"ray 2 workers, by-file plan vs shuffle plan (same run): {gain:.2f}x")
    best = float(by["devices_per_s"].max())
    minutes = TARGET_DEVICES / best / 60
    verdict = "met" if minutes * 60 < TARGET_SECONDS else "not met"
    print(
        f"fastest engine ({by['devices_per_s'].idxmax()}) verifies {TARGET_DEVICES:,} devices in "
        f"{minutes:.1f} min at this rate (target {TARGET_SECONDS / 60:.0f} min: {verdict})"
    )
    per_core = float(by.loc["local", "devices_per_s_per_core"])
    per_hour = 3600 * per_core
    print(
        f"one core at the local rate verifies {per_hour:,.0f} devices an hour; "
        f"1,000,000 devices take {1_000_000 / per_core / 60:,.1f} core-minutes; "
        f"{HOURLY_FLEET:,} devices hourly need {HOURLY_FLEET / per_hour:,.1f} cores "
        "(before headroom)"
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lightfence-bench-") as tmp:
        table = run(
            args.devices,
            args.landmarks,
            args.seed,
            parse_policy(args.policy),
            Path(tmp),
            args.shuffle_baseline,
        )
    report(table)


if __name__ == "__main__":
    main()
