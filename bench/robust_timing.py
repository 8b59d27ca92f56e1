"""What tolerating lying landmarks costs: decide_batch with f = 0 (plain) against f = 1 and auto.

20,000 synthetic devices x 10 landmarks under outside:CN,HK,MO. Devices are drawn half in East
Asia (many near the CN/HK/MO borders, where the precise path runs) and half worldwide; each takes
10 of its 30 nearest shipped landmarks and an RTT drawn from the shipped latency model. The
f = 0 run is the baseline; the others are reported as ratios against it in the same process.
Times are CPU seconds of the process (numpy may use more than one thread; none here do much).

    PYTHONPATH=src python -m bench.robust_timing [DEVICES]
"""

from __future__ import annotations

import csv
import sys
import time
from importlib import resources

import numpy as np
from numpy.typing import NDArray

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import parse_policy
from lightfence.geo.sphere import great_circle_km
from lightfence.sim.latency import shipped_latency_model

LANDMARKS_PER_DEVICE = 10
NEAREST_POOL = 30
POLICY_TEXT = "outside:CN,HK,MO"


def _landmarks() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    base = resources.files("lightfence").joinpath("data", "rtt-public", "landmarks.csv")
    with base.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return (
        np.array([float(r["lat"]) for r in rows]),
        np.array([float(r["lon"]) for r in rows]),
    )


def synthetic_table(devices: int, seed: int = 7) -> MeasurementTable:
    rng = np.random.default_rng(seed)
    lm_lat, lm_lon = _landmarks()
    half = devices // 2
    lat = np.concatenate([rng.uniform(15, 45, half), rng.uniform(-50, 65, devices - half)])
    lon = np.concatenate([rng.uniform(95, 135, half), rng.uniform(-180, 180, devices - half)])
    model = shipped_latency_model()
    d_all = great_circle_km(lat[:, None], lon[:, None], lm_lat[None, :], lm_lon[None, :])
    nearest = np.argsort(d_all, axis=1)[:, :NEAREST_POOL]
    pick = np.argsort(rng.uniform(size=nearest.shape), axis=1)[:, :LANDMARKS_PER_DEVICE]
    idx = np.take_along_axis(nearest, pick, axis=1)
    d = np.take_along_axis(d_all, idx, axis=1)
    rtt = model.rtt_ms(d, rng.uniform(0.0, 1.0, size=d.shape)) + 0.05
    n = devices * LANDMARKS_PER_DEVICE
    return MeasurementTable(
        device_start=np.arange(0, n + 1, LANDMARKS_PER_DEVICE, dtype=np.int64),
        lat_deg=lm_lat[idx].ravel(),
        lon_deg=lm_lon[idx].ravel(),
        rtt_ms=rtt.ravel(),
        floor_ms=np.zeros(n),
        position_error_km=np.zeros(n),
    )


def _time(table: MeasurementTable, liars: str) -> tuple[float, NDArray[np.int8]]:
    """CPU seconds of one decide_batch call (CPU, not wall: the machine is shared)."""
    policy = parse_policy(POLICY_TEXT, liars=liars)
    t0 = time.process_time()
    kinds = decide_batch(table, policy).kind
    return time.process_time() - t0, kinds


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    devices = int(args[0]) if args else 20_000
    table = synthetic_table(devices)
    _time(synthetic_table(200, seed=1), "auto")  # builds the region's boundary index
    base_s, base_kinds = _time(table, "0")
    verified = VerdictKind.VERIFIED.code
    print(f"decide_batch, {devices} devices x {LANDMARKS_PER_DEVICE} landmarks, {POLICY_TEXT}")
    print(f"  f=0     {base_s:7.3f} s CPU  verified {int((base_kinds == verified).sum())}")
    for liars in ("1", "2", "auto"):
        secs, kinds = _time(table, liars)
        print(
            f"  f={liars:<5} {secs:7.3f} s CPU  verified {int((kinds == verified).sum())}"
            f"  x{secs / base_s:.2f} of f=0"
        )


if __name__ == "__main__":
    main()
