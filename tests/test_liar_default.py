"""One liar rule everywhere: the verifier's default is what eval, coverage and plan assume, and
every report says which f it used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lightfence.cli  # noqa: F401  (registers the commands)
from lightfence.cli.app import app, load_command
from lightfence.core.policy import Policy, parse_policy
from lightfence.core.robust import DEFAULT_LIARS
from lightfence.verifier.config import VerifierConfig
from small_data import write_slice

runner = CliRunner()


def test_every_default_is_the_one_rule() -> None:
    assert DEFAULT_LIARS == "auto"
    assert parse_policy("outside:CN,HK,MO").liars == DEFAULT_LIARS
    assert Policy("x", None).liars == DEFAULT_LIARS
    assert VerifierConfig().liars == DEFAULT_LIARS
    for name in ("eval", "coverage", "plan", "verify"):
        command = load_command(name)  # the lazy table's stand-ins carry no options
        option = next(p for p in command.params if p.name == "liars")
        assert option.default == str(DEFAULT_LIARS), name


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slice(tmp_path_factory.mktemp("slice"))


@pytest.mark.parametrize("liars", [None, "0"])
def test_coverage_figure_on_measured_rtts_equals_evals(
    small: Path, tmp_path: Path, liars: str | None
) -> None:
    extra = [] if liars is None else ["--liars", liars]
    policy = ["--policy", "outside:CN,HK,MO"]
    ev = runner.invoke(
        app, ["eval", "--json", "--data", str(small), "--outer-folds", "2", *policy, *extra]
    )
    assert ev.exit_code == 0, ev.output
    summary = json.loads(ev.stdout.strip().splitlines()[-1])
    assert summary["liars"] == (DEFAULT_LIARS if liars is None else 0)
    assert sum(summary["tolerated_liars"].values()) == summary["targets"]
    out = tmp_path / "cov"
    cov = runner.invoke(
        app,
        [
            "coverage",
            "--landmarks",
            str(small / "landmarks.csv"),
            "--data",
            str(small),
            "--resolution",
            "0",
            "--out",
            str(out),
            *policy,
            *extra,
        ],
    )
    assert cov.exit_code == 0, cov.output
    meta = json.loads((out / "summary.json").read_text())
    measured = meta["measured"]
    assert meta["liars"] == summary["liars"]
    assert measured["targets"] == summary["targets"]
    assert measured["verified"] == summary["verdicts"]["VERIFIED"]
    assert measured["tolerated_liars"] == summary["tolerated_liars"]
    assert f"lying landmarks tolerated: {summary['liars']}" in cov.output
    if liars is None:
        assert summary["tolerated_liars"].get("1", 0) > 0  # the rule really tolerated one


def test_plan_states_its_f_and_defaults_to_the_rule(tmp_path: Path) -> None:
    lms = tmp_path / "lm.csv"
    lms.write_text("id,lat,lon\nreykjavik,64.1,-21.9\nperth,-31.9,115.9\n")
    sites = tmp_path / "sites.csv"
    sites.write_text("name,lat,lon,country,gpus\nkansas,38.5,-98.0,US,100\n")
    cands = tmp_path / "cands.csv"
    cands.write_text("name,lat,lon\nsalina,38.6,-97.9\n")
    args = ["plan", "--landmarks", str(lms), "--policy", "in-declared-country"]
    args += ["--sites", str(sites), "--budget", "1", "--candidates", str(cands), "--no-maps"]
    for extra, want in (([], DEFAULT_LIARS), (["--liars", "2"], 2)):
        out = tmp_path / f"plan{want}"
        res = runner.invoke(app, [*args, "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        report = json.loads((out / "plan.json").read_text())
        assert report["liars"] == want
        assert f"lying landmarks tolerated: {want}" in res.output


@pytest.mark.parametrize("command", ["coverage", "plan"])
def test_bad_liars_is_a_clear_error(tmp_path: Path, command: str) -> None:
    lms = tmp_path / "lm.csv"
    lms.write_text("id,lat,lon\nfra,50.11,8.68\n")
    sites = tmp_path / "sites.csv"
    sites.write_text("name,lat,lon,country,gpus\nx,50.0,8.0,DE,1\n")
    args = [command, "--landmarks", str(lms), "--policy", "in:DE", "--liars", "many"]
    if command == "plan":
        args += ["--sites", str(sites), "--budget", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "liars must be 'auto' or a whole number" in res.output
    assert "Traceback" not in res.output
