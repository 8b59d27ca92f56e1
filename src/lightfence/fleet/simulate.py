"""A synthetic GPU fleet on real geography, with adversaries and the ground truth beside it.

Sites sit up to SITE_RADIUS_KM around real data-centre cities (data/dc-cities); landmarks are
the shipped rtt-public hosts; RTTs come from the latency model fitted on the shipped data
(sim.latency, with its fine distance bands): fibre minimum times an inflation drawn from the
measured ratios of paths of similar length. Each device is measured by `landmarks` landmarks
drawn from the 2x as many nearest to the site the verifier believes it is at, as a verifier
would schedule them.

Scenarios (ground truth column `scenario`):

    honest       answers from its true site
    added_delay  answers from its true site, every answer held back ADDED_DELAY_MS
    relay        the GPU sits at a forbidden site; a relay at the claimed (allowed) site forwards
                 the challenges, so every RTT covers landmark -> relay -> GPU and back
    cloned_key   the GPU sits at a forbidden site; a copy of its key answers from the claimed
                 site. Physics sees the clone (the `responder`); only a hardware-bound key stops
                 this, which is why every verdict states its identity provider's trust level
    silent       answers no landmark: no rows, a missed check-in

No RTT is ever below the fibre minimum of its real signal path, so none beats the vacuum
minimum for the responder's true position (checked on every row before anything is returned).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from numpy.typing import NDArray

from lightfence.geo.naturalearth import countries
from lightfence.geo.sphere import destination, great_circle_km
from lightfence.sim.latency import FINE_DISTANCE_BANDS_KM, LatencyModel, shipped_latency_model
from lightfence.units import C_VACUUM_KM_PER_MS

SCENARIOS = ("honest", "added_delay", "relay", "cloned_key", "silent")
SITE_RADIUS_KM = 15.0
SITES_PER_CITY = 8
ADDED_DELAY_MS = (5.0, 80.0)
DEFAULT_FORBIDDEN = ("CN", "HK", "MO")
ROWS_PER_FILE = 1_000_000
ROWS_PER_ROW_GROUP = 125_000
"""Row groups, like files, end on device boundaries, so an engine may split a file by them."""
MAX_SITE_DRAWS = 20


@dataclass(frozen=True)
class AdversaryMix:
    """Fraction of devices in each adversarial scenario; the rest are honest."""

    added_delay: float = 0.03
    relay: float = 0.03
    cloned_key: float = 0.02
    silent: float = 0.02

    def probabilities(self) -> NDArray[np.float64]:
        rest = [self.added_delay, self.relay, self.cloned_key, self.silent]
        if any(p < 0 for p in rest) or sum(rest) > 1.0:
            raise ValueError("adversary fractions must be >= 0 and sum to at most 1")
        return np.asarray([1.0 - sum(rest), *rest], dtype=np.float64)


@dataclass(frozen=True)
class Fleet:
    measurements: pa.Table
    """One row per (device, landmark), grouped by device: the kernel's input columns."""
    truth: pa.Table
    """One row per device: scenario, true and responder positions, countries, claim."""


@dataclass(frozen=True)
class Sites:
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    country: NDArray[np.str_]
    city: NDArray[np.str_]


def load_dc_cities() -> list[tuple[str, str, float, float]]:
    """(city, country, lat, lon) of the shipped data-centre cities."""
    ref = resources.files("lightfence") / "data" / "dc-cities" / "dc_cities.csv"
    with ref.open(encoding="utf-8") as fh:
        return [
            (r["city"], r["country_iso2"], float(r["lat"]), float(r["lon"]))
            for r in csv.DictReader(fh)
        ]


def load_landmarks() -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    """Ids and positions of the shipped rtt-public landmarks."""
    ref = resources.files("lightfence") / "data" / "rtt-public" / "landmarks.csv"
    with ref.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    lat = np.asarray([float(r["lat"]) for r in rows])
    lon = np.asarray([float(r["lon"]) for r in rows])
    return [r["id"] for r in rows], lat, lon


def country_of(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.str_]:
    """Natural Earth country code of each point; '' at sea."""
    out = np.full(len(lat), "", dtype="<U2")
    for code, c in countries().items():
        hit = np.asarray(shapely.intersects_xy(c.geometry, lon, lat)) & (out == "")
        out[hit] = code
    return out


def draw_sites(rng: np.random.Generator, per_city: int = SITES_PER_CITY) -> Sites:
    """Sites up to SITE_RADIUS_KM around each city; a site that falls in the sea is redrawn."""
    cities = load_dc_cities()
    n = len(cities) * per_city
    city = np.repeat(np.asarray([c[0] for c in cities]), per_city)
    clat = np.repeat(np.asarray([c[2] for c in cities]), per_city)
    clon = np.repeat(np.asarray([c[3] for c in cities]), per_city)
    lat, lon = clat.copy(), clon.copy()
    country = np.full(n, "", dtype="<U2")
    todo = np.arange(n)
    for _ in range(MAX_SITE_DRAWS):
        radius = SITE_RADIUS_KM * np.sqrt(rng.random(len(todo)))
        bearing = rng.uniform(0.0, 360.0, len(todo))
        for i, b, r in zip(todo.tolist(), bearing.tolist(), radius.tolist(), strict=True):
            lat[i], lon[i] = destination(float(clat[i]), float(clon[i]), b, r)
        country[todo] = country_of(lat[todo], lon[todo])
        todo = todo[country[todo] == ""]
        if len(todo) == 0:
            break
    # A city whose surroundings are all sea in MAX_SITE_DRAWS tries keeps its centre.
    lat[todo], lon[todo] = clat[todo], clon[todo]
    country[todo] = country_of(lat[todo], lon[todo])
    return Sites(lat=lat, lon=lon, country=country, city=city)


def simulate_fleet(
    devices: int,
    landmarks: int,
    seed: int = 0,
    mix: AdversaryMix | None = None,
    forbidden: tuple[str, ...] = DEFAULT_FORBIDDEN,
    model: LatencyModel | None = None,
) -> Fleet:
    """A fleet of `devices` GPUs, each measured by `landmarks` landmarks (see the docstring)."""
    lm_ids, lm_lat, lm_lon = load_landmarks()
    if devices < 1:
        raise ValueError("need at least one device")
    if not 1 <= landmarks <= len(lm_ids) // 2:
        raise ValueError(f"landmarks per device must be in 1..{len(lm_ids) // 2}")
    model = model or shipped_latency_model(FINE_DISTANCE_BANDS_KM)
    mix = mix or AdversaryMix()
    rng = np.random.default_rng(seed)
    sites = draw_sites(rng)
    bad = np.isin(sites.country, [c.upper() for c in forbidden])
    bad_sites, good_sites = np.flatnonzero(bad), np.flatnonzero(~bad)
    if len(bad_sites) == 0 or len(good_sites) == 0:
        bad_sites = good_sites = np.arange(len(sites.lat))

    scenario = rng.choice(len(SCENARIOS), size=devices, p=mix.probabilities()).astype(np.int8)
    hidden = np.isin(scenario, [SCENARIOS.index("relay"), SCENARIOS.index("cloned_key")])
    true_site = rng.integers(0, len(sites.lat), devices)
    true_site[hidden] = bad_sites[rng.integers(0, len(bad_sites), int(hidden.sum()))]
    claimed_site = true_site.copy()
    claimed_site[hidden] = good_sites[rng.integers(0, len(good_sites), int(hidden.sum()))]
    clone = scenario == SCENARIOS.index("cloned_key")
    responder_site = np.where(clone, claimed_site, true_site)

    # Landmarks: `landmarks` of the 2x nearest to the site the verifier believes in.
    site_lm_km = great_circle_km(
        sites.lat[:, None], sites.lon[:, None], lm_lat[None, :], lm_lon[None, :]
    )
    nearest = np.argsort(site_lm_km, axis=1)[:, : 2 * landmarks]
    answering = np.flatnonzero(scenario != SCENARIOS.index("silent"))
    pick = np.argsort(rng.random((len(answering), 2 * landmarks)), axis=1)[:, :landmarks]
    lm = np.take_along_axis(nearest[claimed_site[answering]], pick, axis=1).ravel()
    row_device = np.repeat(answering, landmarks)

    path_km = site_lm_km[responder_site[row_device], lm]
    rtt = model.sample_rtt_ms(path_km, rng)
    relay_rows = scenario[row_device] == SCENARIOS.index("relay")
    if relay_rows.any():
        d = row_device[relay_rows]
        leg_lm = site_lm_km[claimed_site[d], lm[relay_rows]]
        leg_gpu = great_circle_km(
            sites.lat[claimed_site[d]],
            sites.lon[claimed_site[d]],
            sites.lat[true_site[d]],
            sites.lon[true_site[d]],
        )
        rtt[relay_rows] = model.sample_rtt_ms(leg_lm, rng) + model.sample_rtt_ms(leg_gpu, rng)
    delayed = scenario[row_device] == SCENARIOS.index("added_delay")
    rtt[delayed] += rng.uniform(*ADDED_DELAY_MS, int(delayed.sum()))
    vacuum_min = 2.0 * path_km / C_VACUUM_KM_PER_MS
    if np.any(rtt < vacuum_min):
        raise AssertionError("simulated an RTT below the vacuum minimum: the model is broken")

    measurements = pa.table(
        {
            "device_id": pa.array(row_device.astype(np.int64)),
            "landmark_id": pa.DictionaryArray.from_arrays(
                pa.array(lm.astype(np.int32)), pa.array(lm_ids)
            ),
            "landmark_lat": pa.array(lm_lat[lm]),
            "landmark_lon": pa.array(lm_lon[lm]),
            "min_rtt_ms": pa.array(rtt),
            "claimed_country": _dictionary(sites.country, claimed_site[row_device]),
        }
    )
    counts = np.zeros(devices, dtype=np.int64)
    counts[answering] = landmarks
    truth = pa.table(
        {
            "device_id": pa.array(np.arange(devices, dtype=np.int64)),
            "scenario": pa.DictionaryArray.from_arrays(
                pa.array(scenario.astype(np.int32)), pa.array(list(SCENARIOS))
            ),
            "true_lat": pa.array(sites.lat[true_site]),
            "true_lon": pa.array(sites.lon[true_site]),
            "true_country": _dictionary(sites.country, true_site),
            "true_city": _dictionary(sites.city, true_site),
            "responder_lat": pa.array(sites.lat[responder_site]),
            "responder_lon": pa.array(sites.lon[responder_site]),
            "responder_country": _dictionary(sites.country, responder_site),
            "claimed_country": _dictionary(sites.country, claimed_site),
            "n_landmarks": pa.array(counts),
        }
    )
    return Fleet(measurements=measurements, truth=truth)


def _dictionary(labels: NDArray[np.str_], index: NDArray[np.int64]) -> pa.DictionaryArray:
    """labels[index] as an Arrow dictionary array, encoded without touching one string per row."""
    uniq, codes = np.unique(labels, return_inverse=True)
    return pa.DictionaryArray.from_arrays(
        pa.array(codes[index].astype(np.int32)), pa.array(uniq.tolist())
    )


def write_fleet(
    fleet: Fleet,
    out_dir: Path,
    rows_per_file: int = ROWS_PER_FILE,
    rows_per_row_group: int = ROWS_PER_ROW_GROUP,
) -> list[Path]:
    """Write measurements as part files split on device boundaries, and truth.parquet beside.

    Layout: OUT/measurements/part-00000.parquet ..., OUT/truth.parquet. Device ids ascend, and
    every file and every row group ends on a device boundary: the by-file plan of the Ray engine
    (fleet.layout) proves from the row-group statistics that no device spans two units and then
    needs no shuffle. Other engines and layouts group by device themselves.
    """
    parts_dir = out_dir / "measurements"
    parts_dir.mkdir(parents=True, exist_ok=True)
    for old in parts_dir.glob("part-*.parquet"):
        old.unlink()
    table = fleet.measurements
    ids = table.column("device_id").to_numpy()
    written: list[Path] = []
    for start, stop in _device_cuts(ids, rows_per_file):
        path = parts_dir / f"part-{len(written):05d}.parquet"
        part = table.slice(start, stop - start)
        with pq.ParquetWriter(path, part.schema) as writer:
            for lo, hi in _device_cuts(ids[start:stop], rows_per_row_group):
                writer.write_table(part.slice(lo, hi - lo), row_group_size=hi - lo)
        written.append(path)
    pq.write_table(fleet.truth, out_dir / "truth.parquet")
    return written


def _device_cuts(ids: NDArray[np.int64], rows: int) -> list[tuple[int, int]]:
    """[start, stop) runs of about `rows` rows, each cut moved forward to a device boundary."""
    cuts: list[tuple[int, int]] = []
    start = 0
    while start < len(ids):
        stop = min(start + rows, len(ids))
        while 0 < stop < len(ids) and ids[stop] == ids[stop - 1]:
            stop += 1
        cuts.append((start, stop))
        start = stop
    return cuts
