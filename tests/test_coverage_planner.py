"""The greedy planner and the coverage CLI on small inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import lightfence.cli  # noqa: F401  (registers the commands)
from lightfence.cli.app import app
from lightfence.core.policy import parse_policy
from lightfence.coverage.inputs import Places
from lightfence.coverage.planner import plan


def _places(rows: list[tuple[str, float, float, str | None, float]]) -> Places:
    return Places(
        names=tuple(r[0] for r in rows),
        lat=np.asarray([r[1] for r in rows]),
        lon=np.asarray([r[2] for r in rows]),
        country=tuple(r[3] for r in rows),
        gpus=np.asarray([r[4] for r in rows]),
    )


# Two sites deep inside large countries; landmarks far away; candidates at and away from them.
SITES = _places([("kansas", 38.5, -98.0, "US", 100.0), ("mato", -13.0, -56.0, "BR", 10.0)])
LANDMARKS = _places([("reykjavik", 64.1, -21.9, None, 1.0), ("perth", -31.9, 115.9, None, 1.0)])
CANDIDATES = _places(
    [
        ("nowhere", 0.0, -160.0, None, 1.0),
        ("cuiaba", -13.1, -56.1, None, 1.0),
        ("salina", 38.6, -97.9, None, 1.0),
    ]
)


def test_greedy_takes_the_largest_marginal_gain_first_and_stops_when_nothing_helps() -> None:
    policy = parse_policy("in-declared-country")
    result = plan(SITES, LANDMARKS, CANDIDATES, policy, budget=3)
    assert not result.before.any()
    assert [s.candidate for s in result.steps] == ["salina", "cuiaba"]
    assert [s.gain_gpus for s in result.steps] == [100.0, 10.0]
    assert result.after.all() and result.stopped_early
    assert result.steps[-1].verified_gpus == 110.0


def test_budget_zero_places_nothing() -> None:
    result = plan(SITES, LANDMARKS, CANDIDATES, parse_policy("in-declared-country"), budget=0)
    assert result.steps == () and not result.stopped_early


def test_coverage_cli_writes_a_self_describing_geojson(tmp_path: Path) -> None:
    lms = tmp_path / "lm.csv"
    lms.write_text("id,lat,lon\nfra,50.11,8.68\nsin,1.35,103.82\nnyc,40.71,-74.0\n")
    out = tmp_path / "out"
    args = ["coverage", "--landmarks", str(lms), "--policy", "outside:CN,HK,MO"]
    res = CliRunner().invoke(app, [*args, "--resolution", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "coverage.geojson").read_text())
    assert doc["lightfence"]["layer"] == "coverage"
    props = doc["features"][0]["properties"]
    assert {"cell", "verifiable", "max_inflation", "country"} <= set(props)
    assert (out / "coverage.png").stat().st_size > 10_000
    assert "land area verifiable" in res.output


def test_cli_bad_inputs_exit_2_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "lm.csv"
    bad.write_text("id,lat\nx,1\n")
    runner = CliRunner()
    res = runner.invoke(app, ["coverage", "--landmarks", str(bad), "--policy", "outside:CN"])
    assert res.exit_code == 2 and "missing column(s) lon" in res.output
    res = runner.invoke(app, ["coverage", "--landmarks", str(bad), "--policy", "nowhere:XX"])
    assert res.exit_code == 2 and "unknown policy" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_plan_cli_reports_steps_and_writes_json(tmp_path: Path) -> None:
    lms = tmp_path / "lm.csv"
    lms.write_text("id,lat,lon\nreykjavik,64.1,-21.9\nperth,-31.9,115.9\n")
    sites = tmp_path / "sites.csv"
    sites.write_text("name,lat,lon,country,gpus\nkansas,38.5,-98.0,US,100\n")
    cands = tmp_path / "cands.csv"
    cands.write_text("name,lat,lon\nsalina,38.6,-97.9\nnowhere,0.0,-160.0\n")
    out = tmp_path / "plan"
    args = ["plan", "--landmarks", str(lms), "--policy", "in-declared-country"]
    args += ["--sites", str(sites), "--budget", "2", "--candidates", str(cands)]
    res = CliRunner().invoke(app, [*args, "--no-maps", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "plan.json").read_text())
    assert [s["candidate"] for s in report["steps"]] == ["salina"]
    assert report["gpus_before"] == 0 and report["gpus_after"] == 100
