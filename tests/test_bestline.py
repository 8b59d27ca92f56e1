"""Bestline calibration: below every point, physical slope, optimal, and exact leave-one-out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from lightfence.core.bestline import (
    BASELINE_SLOPE_MS_PER_KM,
    Bestline,
    BestlineCalibration,
    fit_bestline,
    fit_bestlines,
)
from lightfence.units import Bound

# Physical points: RTT at or above the 2/3 c round trip for the distance, plus any extra delay.
# Distances are 0 or at least a metre: the LP solver used as the oracle below loses the optimum
# to scaling for distances like 1e-212 km, where the closed form is still exact.
physical_points = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(1e-3, 20000.0, allow_nan=False)),
        st.floats(0.0, 300.0, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
).map(lambda pts: [(d, BASELINE_SLOPE_MS_PER_KM * d + 0.01 + extra) for d, extra in pts])


def test_baseline_slope_is_a_round_trip_at_two_thirds_c() -> None:
    slope = BASELINE_SLOPE_MS_PER_KM
    assert slope == pytest.approx(2.0 / (299.792458 * 2.0 / 3.0))
    assert slope == pytest.approx(2.0 / Bound.FIBRE.speed_km_per_ms)


@settings(max_examples=200, deadline=None)
@given(physical_points)
def test_bestline_lies_below_all_points_with_a_physical_slope(
    points: list[tuple[float, float]],
) -> None:
    line = fit_bestline("L", [d for d, _ in points], [r for _, r in points])
    assert line is not None
    assert line.slope_ms_per_km >= BASELINE_SLOPE_MS_PER_KM
    assert line.intercept_ms >= 0.0
    for d, rtt in points:
        assert line.slope_ms_per_km * d + line.intercept_ms <= rtt + 1e-9 * max(1.0, rtt)
        # Inverting the line never puts a calibration point outside its cap.
        assert line.max_distance_km(rtt) >= d - 1e-6 * max(1.0, d)


@settings(max_examples=100, deadline=None)
@given(physical_points)
def test_bestline_is_the_optimum_of_the_linear_programme(points: list[tuple[float, float]]) -> None:
    x = np.array([d for d, _ in points])
    y = np.array([r for _, r in points])
    line = fit_bestline("L", x, y)
    assert line is not None
    # Maximise m * mean(x) + b subject to m x_i + b <= y_i, m >= baseline, b >= 0.
    lp = linprog(
        c=[-float(np.mean(x)), -1.0],
        A_ub=np.column_stack([x, np.ones_like(x)]),
        b_ub=y,
        bounds=[(BASELINE_SLOPE_MS_PER_KM, None), (0.0, None)],
        method="highs",
    )
    assert lp.status == 0
    ours = line.slope_ms_per_km * np.mean(x) + line.intercept_ms
    assert ours == pytest.approx(-lp.fun, rel=1e-7, abs=1e-7)


def test_bestline_examples() -> None:
    # Two points on rtt = 0.02 d + 5; a third above the line does not move it.
    line = fit_bestline("L", [100.0, 1000.0, 500.0], [7.0, 25.0, 40.0])
    assert line is not None
    assert line.landmark_id == "L"
    assert line.slope_ms_per_km == pytest.approx(0.02)
    assert line.intercept_ms == pytest.approx(5.0)
    assert line.max_distance_km(25.0) == pytest.approx(1000.0)
    assert line.max_distance_km(1.0) == 0.0
    assert fit_bestline("L", [], []) is None


def test_points_faster_than_fibre_give_the_baseline() -> None:
    # 1 ms round trip over 1,000 km would need 13 x the speed of light in fibre.
    line = fit_bestline("L", [1000.0, 2000.0], [1.0, 30.0])
    assert line == Bestline("L", BASELINE_SLOPE_MS_PER_KM, 0.0)


def test_bad_calibration_input_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        fit_bestline("L", [float("nan")], [1.0])
    with pytest.raises(ValueError, match="RTTs > 0"):
        fit_bestline("L", [10.0], [0.0])
    with pytest.raises(ValueError, match="same length"):
        fit_bestline("L", [10.0, 20.0], [1.0])
    with pytest.raises(ValueError, match="itself"):
        BestlineCalibration([("a", "a", 0.0, 1.0)])


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 7),
        st.integers(0, 7),
        st.floats(0.0, 15000.0, allow_nan=False),
        st.floats(0.0, 100.0, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(rows_strategy, st.integers(0, 7))
def test_leave_one_out_equals_a_fit_without_the_target(
    raw: list[tuple[int, int, float, float]], target: int
) -> None:
    rows = [
        (f"h{a}", f"h{b}", d, BASELINE_SLOPE_MS_PER_KM * d + 0.5 + extra)
        for a, b, d, extra in raw
        if a != b
    ]
    excluded = f"h{target}"
    fast = BestlineCalibration(rows).bestlines(exclude=excluded)
    slow = BestlineCalibration([r for r in rows if excluded not in r[:2]]).bestlines()
    assert excluded not in fast
    assert fast.keys() == slow.keys()
    for landmark_id, line in fast.items():
        assert line.slope_ms_per_km == pytest.approx(slow[landmark_id].slope_ms_per_km)
        assert line.intercept_ms == pytest.approx(slow[landmark_id].intercept_ms, abs=1e-9)
    assert fit_bestlines(rows, exclude=excluded).keys() == fast.keys()


def test_target_rows_never_shape_the_lines() -> None:
    # The target sits absurdly close in delay to landmark a: had its row been used, a's line
    # would be far flatter.
    rows = [
        ("a", "b", 1000.0, 30.0),
        ("a", "c", 2000.0, 50.0),
        ("a", "t", 3000.0, 30.5),
        ("b", "c", 1000.0, 30.0),
    ]
    with_target = BestlineCalibration(rows).bestlines()
    without = BestlineCalibration(rows).bestlines(exclude="t")
    assert with_target["a"] != without["a"]
    assert without["a"] == BestlineCalibration(rows[:2] + rows[3:]).bestlines()["a"]
    assert "t" not in without
