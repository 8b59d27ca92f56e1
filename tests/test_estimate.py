"""Display estimate: accuracy on synthetic geography, the fallbacks, and the target on real data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.core.estimate import (
    BASELINE_SLOPE_MS_PER_KM,
    Bestline,
    BestlineCalibration,
    cbg_plain_centroid,
    estimate_position,
    shortest_ping,
)
from lightfence.core.measurement import Landmark, Measurement
from lightfence.geo.sphere import destination, great_circle_km
from lightfence.units import Bound, max_distance_km

TRUE_LAT, TRUE_LON = 48.1, 11.6


def synthetic_world(
    seed: int, n: int = 25
) -> tuple[list[Landmark], list[Measurement], list[tuple[str, str, float, float]]]:
    """Landmarks scattered around a true point; RTT = 0.016 ms/km * d + 2 ms + queueing."""
    rng = np.random.default_rng(seed)
    landmarks = []
    for i in range(n):
        lat, lon = destination(
            TRUE_LAT, TRUE_LON, float(rng.uniform(0, 360)), float(rng.uniform(50, 2500))
        )
        landmarks.append(Landmark(f"L{i}", lat, lon))

    def rtt(d: float) -> float:
        return 0.016 * d + 2.0 + float(rng.exponential(1.0))

    measurements = [
        Measurement(lm, rtt(float(great_circle_km(TRUE_LAT, TRUE_LON, lm.lat, lm.lon))))
        for lm in landmarks
    ]
    rows = []
    for i, a in enumerate(landmarks):
        for b in landmarks[i + 1 :]:
            d = float(great_circle_km(a.lat, a.lon, b.lat, b.lon))
            rows.append((a.id, b.id, d, rtt(d)))
    return landmarks, measurements, rows


def error_km(lat: float, lon: float) -> float:
    return float(great_circle_km(TRUE_LAT, TRUE_LON, lat, lon))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_estimate_lands_near_the_true_point_and_beats_plain_cbg(seed: int) -> None:
    _, measurements, rows = synthetic_world(seed)
    lines = BestlineCalibration(rows).bestlines()
    est = estimate_position(measurements, lines)
    plain = cbg_plain_centroid(measurements)
    assert error_km(est.lat, est.lon) < 150.0
    assert error_km(est.lat, est.lon) <= error_km(plain.lat, plain.lon) + 25.0
    assert est.method in ("cbg-bestline", "cbg-bestline-grown")
    assert est.baseline_caps == 0
    # The error radius is an honest one here: the truth lies within it.
    assert error_km(est.lat, est.lon) <= est.error_radius_km


def test_landmarks_without_bestline_fall_back_to_the_fibre_caps() -> None:
    _, measurements, _ = synthetic_world(4)
    est = estimate_position(measurements, {})
    plain = cbg_plain_centroid(measurements)
    assert est.baseline_caps == len(measurements)
    assert est.method == "cbg-bestline"
    assert great_circle_km(est.lat, est.lon, plain.lat, plain.lon) < 1.0


def two_landmarks(rtt_ms: float) -> list[Measurement]:
    west = Landmark("W", 0.0, 0.0)
    east = Landmark("E", 0.0, 18.0)  # 2,001 km apart on the equator
    return [Measurement(west, rtt_ms), Measurement(east, rtt_ms)]


def test_disjoint_bestline_caps_grow_towards_the_fibre_caps() -> None:
    measurements = two_landmarks(30.0)  # fibre caps of 3,000 km: they overlap
    steep = {m.landmark.id: Bestline(m.landmark.id, 0.05, 0.0) for m in measurements}  # 600 km
    est = estimate_position(measurements, steep)
    assert est.method == "cbg-bestline-grown"
    assert 0.0 < est.growth_fraction <= 1.0
    assert abs(est.lat) < 1.0
    assert est.lon == pytest.approx(9.0, abs=1.0)
    fibre_km = max_distance_km(30.0, Bound.FIBRE)
    for m in measurements:
        assert great_circle_km(est.lat, est.lon, m.landmark.lat, m.landmark.lon) <= fibre_km


def test_disjoint_fibre_caps_grow_by_a_common_factor() -> None:
    measurements = two_landmarks(5.0)  # fibre caps of 500 km, 2,001 km apart
    lines = {
        m.landmark.id: Bestline(m.landmark.id, BASELINE_SLOPE_MS_PER_KM, 0.0) for m in measurements
    }
    for est in (cbg_plain_centroid(measurements), estimate_position(measurements, lines)):
        assert est.method == "cbg-plain-grown"
        assert est.growth_factor == pytest.approx(2.0 * 1.05, rel=0.02)
        assert est.lon == pytest.approx(9.0, abs=0.5)


def test_floor_and_shortest_ping() -> None:
    near = Landmark("near", 10.0, 10.0)
    far = Landmark("far", 20.0, 20.0)
    measurements = [Measurement(near, 12.0, floor_ms=8.0), Measurement(far, 6.0)]
    est = shortest_ping(measurements)
    assert (est.lat, est.lon, est.method) == (10.0, 10.0, "shortest-ping")
    assert est.error_radius_km == pytest.approx(max_distance_km(4.0, Bound.FIBRE))


@dataclass(frozen=True)
class RawLandmark:
    """Unvalidated, so the estimate's own checks are exercised (core.measurement refuses these
    at construction already)."""

    id: str
    lat: float
    lon: float
    position_error_km: float = 0.0


@dataclass(frozen=True)
class RawMeasurement:
    landmark: RawLandmark
    rtt_ms: float
    floor_ms: float = 0.0


@pytest.mark.parametrize(
    ("measurements", "message"),
    [
        ([], "at least one"),
        ([RawMeasurement(RawLandmark("a", 0.0, 0.0), float("nan"))], "finite"),
        ([RawMeasurement(RawLandmark("a", 0.0, 0.0), -1.0)], "above zero"),
        ([RawMeasurement(RawLandmark("a", 0.0, 0.0), 1.0, floor_ms=-1.0)], "floor"),
        ([RawMeasurement(RawLandmark("a", 95.0, 0.0), 1.0)], "latitude"),
    ],
)
def test_bad_input_is_refused(measurements: list[RawMeasurement], message: str) -> None:
    for function in (cbg_plain_centroid, shortest_ping):
        with pytest.raises(ValueError, match=message):
            function(measurements)
    with pytest.raises(ValueError, match=message):
        estimate_position(measurements, {})


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 360), st.floats(10, 4000), st.floats(0, 40), st.floats(0.011, 0.05)),
        min_size=1,
        max_size=8,
    ),
    st.floats(-60, 60),
    st.floats(-180, 180),
)
def test_estimate_stays_inside_every_fibre_cap(
    spec: list[tuple[float, float, float, float]], lat: float, lon: float
) -> None:
    measurements = []
    lines = {}
    for i, (bearing, distance, extra, slope) in enumerate(spec):
        lm_lat, lm_lon = destination(lat, lon, bearing, distance)
        rtt = 2.0 * distance / Bound.FIBRE.speed_km_per_ms + extra + 0.01
        measurements.append(Measurement(Landmark(f"L{i}", lm_lat, lm_lon), rtt))
        lines[f"L{i}"] = Bestline(f"L{i}", slope, 1.0)
    est = estimate_position(measurements, lines)
    # cbg-plain: the nearest landmark is beyond DEFAULT_SETTINGS.plain_above_ms.
    assert est.method in ("cbg-bestline", "cbg-bestline-grown", "cbg-plain")
    for m in measurements:
        cap_km = max_distance_km(m.rtt_ms, Bound.FIBRE)
        # Sampled regions: allow a sliver of sampling error at the rim.
        slack_km = max(1.0, 0.02 * cap_km)
        assert great_circle_km(est.lat, est.lon, m.landmark.lat, m.landmark.lon) <= (
            cap_km + slack_km
        )
    assert math.isfinite(est.error_radius_km)
