"""The engine against an exact WGS84 reference, on true positions 20-100 km outside CN, HK, MO.

Each position is measured by its 8 nearest shipped landmarks at exactly the vacuum-minimum RTT
(2 x the GeographicLib geodesic / c), the hardest case for precision. Policy outside:CN,HK,MO,
f = 0 and f = 1, the same 10 km border margin for both.

The reference works on the ellipsoid directly (pyproj's Geod: GeographicLib in C). The feasible
region F (f = 0: in every geodesic disc; f = 1: in all but one) is star-shaped from the true
position P, which is in every disc, so along each of AZIMUTHS geodesic rays from P it is an
interval [0, t]: t is the smallest exit distance of the discs (f = 0) or the second smallest
(f = 1), each found by bisection to BISECT_M. The reference verifies when no point sampled along
the rays (every RAY_STEP_KM and at the ends) is inside the region or within the margin of its
border (border densified to BORDER_STEP_KM; distances near the margin exact on the ellipsoid).
It samples F, so it can only verify more than the exact truth: a hard bar for the engine.

Also: verdict throughput of this revision against a base revision (`--base`, default the commit
before the physics rework), each in its own process on the same fleets, alternated.

    python -m bench reference_geometry            # 400 positions, throughput against --base
    python -m bench.reference_geometry --positions 100 --no-throughput
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pyproj import Geod
from scipy.spatial import cKDTree

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import parse_policy
from lightfence.geo.boundary import densify_ring
from lightfence.geo.regions import Countries
from lightfence.geo.sphere import unit_vectors
from lightfence.rttdata import load_dataset
from lightfence.units import C_VACUUM_KM_PER_MS, EARTH_MEAN_RADIUS_KM

GEOD = Geod(ellps="WGS84")
MARGIN_KM = 10.0
LANDMARKS = 8
AZIMUTHS = 720
BISECT_M = 20.0
RAY_STEP_KM = 1.0
BORDER_STEP_KM = 0.25
BASE_REV = "c378152"


def _inv_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    _, _, s = GEOD.inv(lon1, lat1, lon2, lat2)
    return np.asarray(s, dtype=np.float64) / 1000.0


class Border:
    """The restricted region's border densified finely, for distances near the margin."""

    def __init__(self, region: Countries) -> None:
        lons, lats = [], []
        geom = region.geometry
        for poly in getattr(geom, "geoms", [geom]):
            for ring in [poly.exterior, *poly.interiors]:
                xy = np.asarray(ring.coords)
                # densify_ring spaces at most 2 km on the model sphere; repeat at finer steps.
                lo, la = xy[:, 0], xy[:, 1]
                for _ in range(3):
                    lo, la = _halve(lo, la)
                lons.append(lo)
                lats.append(la)
        self.lon = np.concatenate(lons)
        self.lat = np.concatenate(lats)
        self.tree = cKDTree(unit_vectors(self.lat, self.lon))
        self.region = region

    def near(self, lat: np.ndarray, lon: np.ndarray, km: float) -> np.ndarray:
        """Mask: within `km` of the border (exact on the ellipsoid near the threshold)."""
        pts = unit_vectors(lat, lon)
        chord, idx = self.tree.query(pts, k=4)
        approx = 2 * np.arcsin(np.clip(chord[:, 0] / 2, 0, 1)) * EARTH_MEAN_RADIUS_KM
        out = approx <= km * 0.99
        check = (~out) & (approx <= km * 1.02)
        for j in np.flatnonzero(check):
            d = _inv_km(np.full(4, lat[j]), np.full(4, lon[j]), self.lat[idx[j]], self.lon[idx[j]])
            out[j] = bool(d.min() <= km)
        return np.asarray(out, dtype=bool)


def _halve(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, la = densify_ring(lon, lat)
    mid_lo = (lo[:-1] + lo[1:]) / 2
    mid_la = (la[:-1] + la[1:]) / 2
    out_lo = np.empty(2 * len(lo) - 1)
    out_la = np.empty(2 * len(la) - 1)
    out_lo[0::2], out_lo[1::2] = lo, mid_lo
    out_la[0::2], out_la[1::2] = la, mid_la
    return out_lo, out_la


def positions(border: Border, count: int, seed: int) -> np.ndarray:
    """True positions outside the region, 20-100 km from its border (exact on the ellipsoid)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, float]] = []
    while len(out) < count:
        i = rng.integers(0, len(border.lat), 256)
        az = rng.uniform(0, 360, 256)
        d = rng.uniform(15, 110, 256) * 1000.0
        lon, lat, _ = GEOD.fwd(border.lon[i], border.lat[i], az, d)
        lat, lon = np.asarray(lat), np.asarray(lon)
        outside = ~border.region.contains(lat, lon)
        far = ~border.near(lat, lon, 20.0)
        close = border.near(lat, lon, 100.0)
        for a, b in zip(lat[outside & far & close], lon[outside & far & close], strict=True):
            out.append((float(a), float(b)))
    return np.array(out[:count])


def measurements(pos: np.ndarray, seed: int) -> tuple[MeasurementTable, np.ndarray, np.ndarray]:
    data = load_dataset()
    lm = np.array([(data.hosts[i].lat, data.hosts[i].lon) for i in data.landmark_ids])
    lats, lons, rtts = [], [], []
    for lat, lon in pos:
        d = _inv_km(np.full(len(lm), lat), np.full(len(lm), lon), lm[:, 0], lm[:, 1])
        near = np.argsort(d)[:LANDMARKS]
        lats.append(lm[near, 0])
        lons.append(lm[near, 1])
        rtts.append(2.0 * d[near] / C_VACUUM_KM_PER_MS + 1e-12)
    n = len(pos) * LANDMARKS
    table = MeasurementTable(
        device_start=np.arange(0, n + 1, LANDMARKS, dtype=np.int64),
        lat_deg=np.concatenate(lats),
        lon_deg=np.concatenate(lons),
        rtt_ms=np.concatenate(rtts),
        floor_ms=np.zeros(n),
        position_error_km=np.zeros(n),
    )
    return table, np.array(lats), np.array(lons)


def exits_km(p: tuple[float, float], lm_lat: np.ndarray, lm_lon: np.ndarray) -> np.ndarray:
    """(landmarks, AZIMUTHS): distance along each geodesic ray from P where it leaves each disc
    (the disc's radius is the landmark's distance to P: RTT at the vacuum minimum)."""
    k = len(lm_lat)
    radius = _inv_km(np.full(k, p[0]), np.full(k, p[1]), lm_lat, lm_lon)
    az = np.tile(np.linspace(0, 360, AZIMUTHS, endpoint=False), k)
    r = np.repeat(radius, AZIMUTHS)
    la, lo = np.repeat(lm_lat, AZIMUTHS), np.repeat(lm_lon, AZIMUTHS)
    lo_t, hi_t = np.zeros(len(az)), 2.0 * r + 1.0
    while np.max(hi_t - lo_t) > BISECT_M / 1000.0:
        mid = (lo_t + hi_t) / 2
        x_lon, x_lat, _ = GEOD.fwd(np.full(len(az), p[1]), np.full(len(az), p[0]), az, mid * 1000)
        inside = _inv_km(la, lo, np.asarray(x_lat), np.asarray(x_lon)) <= r
        lo_t = np.where(inside, mid, lo_t)
        hi_t = np.where(inside, hi_t, mid)
    return lo_t.reshape(k, AZIMUTHS)


def reference_verified(border: Border, p: tuple[float, float], t: np.ndarray) -> bool:
    az = np.linspace(0, 360, AZIMUTHS, endpoint=False)
    steps = [np.append(np.arange(0, ti, RAY_STEP_KM), ti) for ti in t]
    count = np.array([len(s) for s in steps])
    dist = np.concatenate(steps) * 1000.0
    azs = np.repeat(az, count)
    lon, lat, _ = GEOD.fwd(np.full(len(dist), p[1]), np.full(len(dist), p[0]), azs, dist)
    lat, lon = np.asarray(lat), np.asarray(lon)
    return not (border.region.contains(lat, lon).any() or border.near(lat, lon, MARGIN_KM).any())


def compare(count: int, seed: int) -> dict[str, object]:
    policy0 = parse_policy("outside:CN,HK,MO", liars=0)
    forbidden = policy0.allowed.complement() if policy0.allowed else None
    assert isinstance(forbidden, Countries)
    border = Border(forbidden)
    pos = positions(border, count, seed)
    table, lm_lat, lm_lon = measurements(pos, seed)
    result: dict[str, object] = {"positions": count, "landmarks": LANDMARKS}
    engine = {
        f: decide_batch(table, parse_policy("outside:CN,HK,MO", liars=f)).kind
        == VerdictKind.VERIFIED.code
        for f in (0, 1)
    }
    ref = {0: np.zeros(count, bool), 1: np.zeros(count, bool)}
    t0 = time.perf_counter()
    for j, p in enumerate(pos):
        ex = np.sort(exits_km((p[0], p[1]), lm_lat[j], lm_lon[j]), axis=0)
        ref[0][j] = reference_verified(border, (p[0], p[1]), ex[0])
        ref[1][j] = reference_verified(border, (p[0], p[1]), ex[1])
        if (j + 1) % 50 == 0:
            print(f"  reference: {j + 1}/{count} positions, {time.perf_counter() - t0:.0f} s")
    for f in (0, 1):
        both = int((engine[f] & ref[f]).sum())
        result[f"f{f}"] = {
            "reference_verified": int(ref[f].sum()),
            "engine_verified": int(engine[f].sum()),
            "engine_share_of_reference": round(both / max(int(ref[f].sum()), 1), 4),
            "engine_only": int((engine[f] & ~ref[f]).sum()),
        }
    return result


def _rate(src: Path, bench_dir: Path, kind: str, devices: int) -> float:
    code = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(bench_dir)!r})\n"
        "from verdicts import fleet, FAR_SITES, NEAR_SITES\n"
        "from lightfence.core.batch import decide_batch\n"
        "from lightfence.core.policy import parse_policy\n"
        f"t = fleet({kind}, {devices}, 7)\n"
        "p = parse_policy('outside:CN,HK,MO')\n"
        "decide_batch(fleet(FAR_SITES, 50, 1), p)\n"
        "s = time.perf_counter(); decide_batch(t, p); e = time.perf_counter() - s\n"
        f"print({devices} / e)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def throughput(base: str, rounds: int = 5) -> dict[str, object]:
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["git", "-C", str(here), "worktree", "add", "--detach", tmp, base],
            check=True,
            capture_output=True,
        )
        try:
            out: dict[str, object] = {"base": base}
            for kind, devices in (("FAR_SITES", 20000), ("NEAR_SITES", 2000)):
                ratios, new_r, old_r = [], [], []
                for _ in range(rounds):
                    old = _rate(Path(tmp) / "src", Path(tmp) / "bench", kind, devices)
                    new = _rate(here / "src", here / "bench", kind, devices)
                    ratios.append(new / old)
                    new_r.append(new)
                    old_r.append(old)
                out[kind.lower()] = {
                    "devices": devices,
                    "new_verdicts_per_s": round(float(np.median(new_r))),
                    "base_verdicts_per_s": round(float(np.median(old_r))),
                    "new_over_base_median": round(float(np.median(ratios)), 3),
                }
            return out
        finally:
            subprocess.run(
                ["git", "-C", str(here), "worktree", "remove", "--force", tmp],
                check=False,
                capture_output=True,
            )


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(prog="python -m bench.reference_geometry")
    ap.add_argument("--positions", type=int, default=400)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--base", default=BASE_REV, help="revision for the throughput baseline")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--no-reference", action="store_true", help="throughput only")
    args = ap.parse_args(argv)
    result = {} if args.no_reference else compare(args.positions, args.seed)
    if not args.no_throughput:
        result["throughput"] = throughput(args.base)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
