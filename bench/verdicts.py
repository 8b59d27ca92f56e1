"""Verdicts per second per core, 10 landmarks per device, policy outside:CN,HK,MO.

Two workloads: devices far from the restricted region (the fast path decides almost all) and
devices near its borders (the precise path does the work). Baseline, measured in the same run:
a naive implementation that draws each cap as a 256-gon with shapely, intersects them and tests
the result against the restricted polygons. Single-threaded numpy (one core).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time

import numpy as np
from shapely.geometry import Polygon

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import countries_region, parse_policy
from lightfence.geo.sphere import ELLIPSOID_EXCESS, destination, great_circle_km
from lightfence.rttdata import load_dataset
from lightfence.sim.latency import shipped_latency_model
from lightfence.units import max_distance_km

LANDMARKS_PER_DEVICE = 10
FAR_SITES = [(50.11, 8.68), (40.71, -74.0), (51.5, -0.12), (-33.87, 151.2), (37.4, -122.0)]
NEAR_SITES = [(21.03, 105.85), (37.57, 126.98), (47.92, 106.92), (28.6, 77.2), (25.03, 121.56)]


def fleet(sites: list[tuple[float, float]], devices: int, seed: int) -> MeasurementTable:
    """Devices scattered within 300 km of the sites, each measured by its 10 nearest landmarks
    of the shipped data, RTTs drawn from the fitted latency model."""
    rng = np.random.default_rng(seed)
    data = load_dataset()
    lm = np.array([(data.hosts[i].lat, data.hosts[i].lon) for i in data.landmark_ids])
    site = rng.integers(0, len(sites), devices)
    pos = [
        destination(
            sites[s][0], sites[s][1], float(rng.uniform(0, 360)), float(rng.uniform(0, 300))
        )
        for s in site
    ]
    lat = np.array([p[0] for p in pos])
    lon = np.array([p[1] for p in pos])
    d = great_circle_km(lat[:, None], lon[:, None], lm[None, :, 0], lm[None, :, 1])
    nearest = np.argsort(d, axis=1)[:, :LANDMARKS_PER_DEVICE]
    dist = np.take_along_axis(d, nearest, axis=1)
    rtt = shipped_latency_model().rtt_ms(dist, rng.uniform(0, 1, dist.shape)) + 0.05
    n = devices * LANDMARKS_PER_DEVICE
    return MeasurementTable(
        device_start=np.arange(0, n + 1, LANDMARKS_PER_DEVICE, dtype=np.int64),
        lat_deg=lm[nearest.ravel(), 0],
        lon_deg=lm[nearest.ravel(), 1],
        rtt_ms=rtt.ravel(),
        floor_ms=np.zeros(n),
        position_error_km=np.zeros(n),
    )


def naive_verified(table: MeasurementTable, device: int, restricted: object) -> bool:
    lo, hi = int(table.device_start[device]), int(table.device_start[device + 1])
    poly = None
    for lat, lon, rtt in zip(
        table.lat_deg[lo:hi], table.lon_deg[lo:hi], table.rtt_ms[lo:hi], strict=True
    ):
        r_km = min(max_distance_km(rtt) * (1.0 + ELLIPSOID_EXCESS), 19000.0)
        ring = [destination(lat, lon, b, r_km)[::-1] for b in np.linspace(0, 360, 256, False)]
        cap = Polygon(ring).buffer(0)
        poly = cap if poly is None else poly.intersection(cap)
    assert poly is not None
    return not poly.is_empty and not poly.intersects(restricted)


def rate(fn: object, count: int) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="bench.verdicts")
    ap.add_argument("--devices", type=int, default=20_000)
    ap.add_argument("--naive-devices", type=int, default=200)
    args = ap.parse_args(argv)
    policy = parse_policy("outside:CN,HK,MO")
    restricted = countries_region(("CN", "HK", "MO")).geometry
    out: dict[str, float] = {}
    for name, sites in (("fast", FAR_SITES), ("precise", NEAR_SITES)):
        table = fleet(sites, args.devices, seed=1)
        decide_batch(fleet(sites, 50, seed=2), policy)  # warm caches (region boundary, memo)
        start = time.perf_counter()
        result = decide_batch(table, policy)
        secs = time.perf_counter() - start
        verified = float(np.mean(result.kind == VerdictKind.VERIFIED.code))
        naive = rate(
            lambda t=table: [naive_verified(t, d, restricted) for d in range(args.naive_devices)],
            args.naive_devices,
        )
        out[f"{name}_verdicts_per_s"] = args.devices / secs
        out[f"{name}_naive_verdicts_per_s"] = naive
        out[f"{name}_speedup"] = (args.devices / secs) / naive
        out[f"{name}_verified_share"] = verified
        print(
            f"{name:8s} workload: {args.devices / secs:10,.0f} verdicts/s/core "
            f"(naive shapely baseline {naive:7,.0f}/s, x{(args.devices / secs) / naive:,.0f}); "
            f"{verified:.0%} VERIFIED"
        )
    return out


if __name__ == "__main__":
    main()
