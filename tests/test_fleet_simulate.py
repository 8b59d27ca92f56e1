"""The fleet simulator: real geography, a fitted latency model, physics never broken."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lightfence.core.policy import parse_policy
from lightfence.fleet.check import check_verdicts
from lightfence.fleet.kernel import verdicts_for_frame
from lightfence.fleet.simulate import (
    SCENARIOS,
    AdversaryMix,
    country_of,
    load_dc_cities,
    simulate_fleet,
    write_fleet,
)
from lightfence.geo.naturalearth import countries
from lightfence.geo.sphere import great_circle_km
from lightfence.sim.latency import FINE_DISTANCE_BANDS_KM, shipped_latency_model, shipped_pairs
from lightfence.units import C_VACUUM_KM_PER_MS


def test_dc_cities_agree_with_shipped_landmarks_and_borders() -> None:
    ref = resources.files("lightfence") / "data" / "rtt-public" / "landmarks.csv"
    with ref.open(encoding="utf-8") as fh:
        by_city = {r["city"]: (float(r["lat"]), float(r["lon"])) for r in csv.DictReader(fh)}
    cities = load_dc_cities()
    # On land in (or within ~30 km of) the stated country: a 3 x 3 grid 0.25 degrees apart.
    offsets = np.array([(a, b) for a in (-0.25, 0.0, 0.25) for b in (-0.25, 0.0, 0.25)])
    lat = np.array([c[2] for c in cities])[:, None] + offsets[None, :, 0]
    lon = np.array([c[3] for c in cities])[:, None] + offsets[None, :, 1]
    near = country_of(lat.ravel(), lon.ravel()).reshape(lat.shape)
    compared = 0
    for i, (city, code, clat, clon) in enumerate(cities):
        assert code in countries(), city
        assert code in near[i], (city, near[i])
        if city in by_city:
            ref_lat, ref_lon = by_city[city]
            assert great_circle_km(clat, clon, ref_lat, ref_lon) < 60.0, city
            compared += 1
    assert compared >= 10


def fibre_min_ms(d: np.ndarray) -> np.ndarray:
    return shipped_latency_model().fibre_rtt_ms(d)


def test_simulator_latency_model_matches_the_data_it_was_fitted_on() -> None:
    model = shipped_latency_model(FINE_DISTANCE_BANDS_KM)
    assert sum(model.pairs_per_band) > 20_000
    assert min(model.pairs_per_band) >= 30  # every band fitted on its own pairs
    assert 1.6 < float(model.inflation(3000.0, 0.5)) < 2.4
    d, rtt = shipped_pairs()
    sim = model.sample_rtt_ms(d, np.random.default_rng(0))
    measured = rtt / fibre_min_ms(d)
    simulated = sim / fibre_min_ms(d)
    for lo, hi in ((0.0, 100.0), (100.0, 500.0), (500.0, 2000.0), (2000.0, np.inf)):
        band = (d >= lo) & (d < hi) & (d > 1.0)
        assert abs(np.median(simulated[band]) / np.median(measured[band]) - 1.0) < 0.15, lo
    assert np.all(sim >= fibre_min_ms(d))


def test_rtts_never_beat_physics_for_the_responder() -> None:
    mix = AdversaryMix(added_delay=0.2, relay=0.2, cloned_key=0.2, silent=0.1)
    fleet = simulate_fleet(3000, 8, seed=5, mix=mix)
    m = fleet.measurements.to_pandas()
    truth = fleet.truth.to_pandas().set_index("device_id")
    rows = truth.loc[m["device_id"]]
    d = great_circle_km(
        m["landmark_lat"].to_numpy(),
        m["landmark_lon"].to_numpy(),
        rows["responder_lat"].to_numpy(),
        rows["responder_lon"].to_numpy(),
    )
    assert np.all(m["min_rtt_ms"].to_numpy() >= 2.0 * d / C_VACUUM_KM_PER_MS)
    # Relays: the RTT covers landmark -> relay -> GPU, so it is at least the direct fibre minimum.
    relay = (rows["scenario"] == "relay").to_numpy()
    assert relay.any()
    assert np.all(m["min_rtt_ms"].to_numpy()[relay] >= fibre_min_ms(d[relay]))
    # Ground truth: silent devices have no rows, every scenario occurs, rows grouped by device.
    silent = truth.index[truth["scenario"] == "silent"]
    assert not m["device_id"].isin(silent).any()
    assert set(truth["scenario"].astype(str)) == set(SCENARIOS)
    ids = m["device_id"].to_numpy()
    assert np.all(np.diff(ids) >= 0)
    hidden = truth[truth["scenario"].isin(["relay", "cloned_key"])]
    assert set(hidden["true_country"].astype(str)) <= {"CN", "HK", "MO"}
    assert not set(hidden["claimed_country"].astype(str)) & {"CN", "HK", "MO"}


def test_same_seed_same_fleet() -> None:
    a = simulate_fleet(200, 5, seed=9)
    b = simulate_fleet(200, 5, seed=9)
    assert a.measurements.equals(b.measurements)
    assert a.truth.equals(b.truth)


@pytest.mark.parametrize("policy_text", ["outside:CN,HK,MO", "in-declared-country"])
def test_zero_false_verified_over_a_simulated_fleet(policy_text: str) -> None:
    mix = AdversaryMix(added_delay=0.1, relay=0.15, cloned_key=0.05, silent=0.05)
    fleet = simulate_fleet(1500, 10, seed=11, mix=mix)
    policy = parse_policy(policy_text)
    verdicts = verdicts_for_frame(fleet.measurements, policy)
    check = check_verdicts(verdicts, fleet.truth.to_pandas(), policy)
    assert check.sound, check
    counts = check.counts
    assert counts.loc["relay"].get("VERIFIED", 0) == 0
    assert counts.loc["honest"].get("VERIFIED", 0) > 0


def test_write_fleet_splits_on_device_boundaries(tmp_path: Path) -> None:
    fleet = simulate_fleet(300, 7, seed=2)
    files = write_fleet(fleet, tmp_path, rows_per_file=500)
    assert len(files) > 2
    seen: set[int] = set()
    total = 0
    for f in files:
        ids = set(pq.read_table(f, columns=["device_id"]).column(0).to_pylist())
        assert not ids & seen
        seen |= ids
        total += pq.read_metadata(f).num_rows
    assert total == fleet.measurements.num_rows
    assert pq.read_metadata(tmp_path / "truth.parquet").num_rows == 300
