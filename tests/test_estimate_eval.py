"""Leave-one-out evaluation of the estimate on the shipped public data (issue 2's target)."""

from __future__ import annotations

import pytest

from lightfence.core.estimate import BestlineCalibration
from lightfence.eval.estimates import calibration_rows, evaluate_estimates, target_measurements
from lightfence.rttdata import load_dataset


def test_a_target_is_never_its_own_landmark_nor_in_its_calibration() -> None:
    data = load_dataset()
    rows = calibration_rows(data)
    fits = BestlineCalibration(rows)
    for target in ("wn-6", "ra-6031"):
        assert all(m.landmark.id != target for m in target_measurements(data, target))
        lines = fits.bestlines(exclude=target)
        refit = BestlineCalibration([r for r in rows if target not in r[:2]]).bestlines()
        assert target not in lines
        assert lines == refit


@pytest.mark.slow
def test_out_of_sample_estimate_beats_plain_cbg_at_the_median_and_the_p90() -> None:
    """Issue 21's acceptance, on outer folds of the nested CV (a few minutes of CPU)."""
    result = evaluate_estimates(load_dataset())
    assert result["targets"] == 149
    assert result["skipped"] == []
    assert result["estimate_median_km"] <= 0.75 * result["baseline_cbg_median_km"]
    assert result["estimate_p90_km"] <= result["baseline_cbg_p90_km"]
    ids = [row["id"] for row in result["per_target"]]
    assert len(set(ids)) == 149
    assert len(result["estimate_cv"]["chosen"]) == 5
