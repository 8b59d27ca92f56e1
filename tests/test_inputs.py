"""Bad input gives a clear error, never a wrong verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lightfence.core.batch import InvalidBatch, MeasurementTable, decide_batch
from lightfence.core.measurement import InvalidMeasurement, Landmark, Measurement
from lightfence.core.policy import PolicyError, parse_policy
from lightfence.core.verdict import decide
from lightfence.geo.naturalearth import UnknownCountry

FRA = Landmark("fra", 50.11, 8.68)


@pytest.mark.parametrize("rtt", [math.nan, -1.0, 0.0, math.inf])
def test_bad_rtt_is_rejected(rtt: float) -> None:
    with pytest.raises(InvalidMeasurement, match="RTT"):
        Measurement(FRA, rtt)


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 0.0), (-90.5, 0.0), (0.0, 400.0), (math.nan, 0)])
def test_landmark_out_of_range_is_rejected(lat: float, lon: float) -> None:
    with pytest.raises(InvalidMeasurement):
        Landmark("x", lat, lon)


def test_floor_at_or_above_rtt_is_rejected() -> None:
    with pytest.raises(InvalidMeasurement, match="floor"):
        Measurement(FRA, 1.0, floor_ms=1.0)


def test_empty_landmark_set_is_rejected() -> None:
    with pytest.raises(InvalidMeasurement, match="no measurements"):
        decide([], parse_policy("outside:CN"))


@pytest.mark.parametrize(
    "text", ["outside:", "outside:ZZ", "in:", "within:1,2", "within:a,b,c", "nowhere", "in:XX,DE"]
)
def test_bad_policy_is_rejected(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_unknown_claimed_country_is_rejected() -> None:
    with pytest.raises(UnknownCountry, match="unknown country code"):
        decide([Measurement(FRA, 1.0)], parse_policy("outside:CN"), claimed="QQ")


def test_in_declared_country_needs_a_claim() -> None:
    with pytest.raises(InvalidMeasurement, match="declared"):
        decide([Measurement(FRA, 1.0)], parse_policy("in-declared-country"))


def _table(**overrides: object) -> MeasurementTable:
    cols: dict[str, object] = {
        "device_start": np.array([0, 1]),
        "lat_deg": np.array([50.0]),
        "lon_deg": np.array([8.0]),
        "rtt_ms": np.array([1.0]),
        "floor_ms": np.zeros(1),
        "position_error_km": np.zeros(1),
    }
    cols.update(overrides)
    return MeasurementTable(**cols)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {"rtt_ms": np.array([np.nan])},
        {"rtt_ms": np.array([0.0])},
        {"lat_deg": np.array([95.0])},
        {"floor_ms": np.array([2.0])},
        {"device_start": np.array([0, 2])},
        {"position_error_km": np.array([-1.0])},
    ],
)
def test_batch_rejects_bad_rows(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidBatch):
        decide_batch(_table(**overrides), parse_policy("outside:CN"))


def test_batch_device_without_rows_is_unverified() -> None:
    table = _table(device_start=np.array([0, 0, 1]))
    result = decide_batch(table, parse_policy("outside:CN"))
    assert result.names() == ["UNVERIFIED", "VERIFIED"]
