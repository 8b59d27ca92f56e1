"""`lightfence eval` on the shipped real data: the issue's acceptance figures, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lightfence.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_eval_on_shipped_data_meets_the_targets(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--json", "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["targets"] == 149
    assert summary["false_verified"] == 0
    assert summary["false_refuted"] == 0
    assert summary["relay_trials"] > 0
    assert summary["relay_false_verified"] == 0
    assert summary["estimate_median_km"] <= 0.75 * summary["baseline_cbg_median_km"]
    assert summary["estimate_p90_km"] <= summary["baseline_cbg_p90_km"]
    assert summary["liars"] == "auto" and sum(summary["tolerated_liars"].values()) == 149
    assert sum(summary["verdicts"].values()) == 149
    assert {"id", "country", "verdict", "estimate_lat", "estimate_lon", "error_km"} <= set(
        summary["per_target"][0]
    )
    for name in ("report.md", "error_cdf.png", "rate_by_border_distance.png", "verdict_map.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--policy", "nowhere"], "unknown policy"),
        (["eval", "--policy", "outside:ZZ"], "unknown country code"),
        (["eval", "--data", "/nonexistent/dir"], "not a directory"),
        (["eval", "--bound", "warp"], "warp"),
    ],
)
def test_eval_bad_input_is_a_clear_error(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_eval_bad_csv_names_file_and_line(tmp_path: Path) -> None:
    for name in ("landmarks.csv", "targets.csv"):
        (tmp_path / name).write_text("id,lat,lon,country_iso2,city,source\na,95,0,DE,,x\n")
    (tmp_path / "rtts.csv").write_text("src_id,dst_id,min_rtt_ms,n_samples,measured_at\n")
    result = runner.invoke(app, ["eval", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "landmarks.csv" in result.output
    assert "Traceback" not in result.output
