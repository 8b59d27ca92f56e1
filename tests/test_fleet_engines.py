"""The local and Ray engines give the kernel's verdicts, one per device, whatever the layout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import lightfence.cli  # noqa: F401  (registers the commands)
from lightfence.cli.app import app
from lightfence.core.policy import parse_policy
from lightfence.fleet.engine_local import EngineError, expand_inputs, run_local
from lightfence.fleet.kernel import verdicts_for_frame
from lightfence.fleet.simulate import simulate_fleet

POLICY = "outside:CN,HK,MO"


@pytest.fixture(scope="module")
def scattered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A small fleet whose rows are shuffled over 5 files: most devices span several files."""
    fleet = simulate_fleet(400, 6, seed=4)
    table = fleet.measurements.to_pandas().sample(frac=1.0, random_state=0)
    root = tmp_path_factory.mktemp("scattered")
    for i, part in enumerate(range(0, len(table), len(table) // 5 + 1)):
        chunk = table.iloc[part : part + len(table) // 5 + 1]
        pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False), root / f"m{i}.parquet")
    expected = verdicts_for_frame(fleet.measurements, parse_policy(POLICY))
    return root, expected.sort_values("device_id").reset_index(drop=True)


def _read(out: Path) -> pd.DataFrame:
    got = pd.read_parquet(out)
    return got.sort_values("device_id").reset_index(drop=True)


def _same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert got["device_id"].is_unique
    assert got["device_id"].tolist() == expected["device_id"].tolist()
    assert got["verdict"].astype(str).tolist() == expected["verdict"].astype(str).tolist()
    assert got["n_landmarks"].tolist() == expected["n_landmarks"].tolist()


def test_local_engine_groups_devices_across_files(
    scattered: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    root, expected = scattered
    result = run_local(expand_inputs(str(root / "*.parquet")), parse_policy(POLICY), tmp_path, 37)
    assert result.devices == len(expected)
    assert len(result.output_files) > 3
    _same(_read(tmp_path), expected)
    # A rerun replaces its own verdict files and nothing else.
    run_local(expand_inputs(str(root)), parse_policy(POLICY), tmp_path)
    _same(_read(tmp_path), expected)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    from lightfence.fleet.engine_ray import start_ray, stop_ray

    start_ray(2)
    yield
    stop_ray()


def test_ray_engine_matches_the_kernel(
    scattered: tuple[Path, pd.DataFrame], tmp_path: Path, ray_cluster: None
) -> None:
    from lightfence.fleet.engine_ray import run_ray

    root, expected = scattered
    result = run_ray(expand_inputs(str(root)), parse_policy(POLICY), tmp_path, workers=2)
    assert result.devices == len(expected)
    assert result.rows == int(expected["n_landmarks"].sum())
    _same(_read(tmp_path), expected)


def test_engines_refuse_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no Parquet files"):
        expand_inputs(str(tmp_path / "nothing-*.parquet"))
    pq.write_table(pa.table({"device_id": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(EngineError, match="missing column"):
        run_local([str(tmp_path / "bad.parquet")], parse_policy(POLICY), tmp_path / "out")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pq.write_table(pa.table({"x": [1]}), foreign / "keep.parquet")
    with pytest.raises(EngineError, match="not lightfence verdicts"):
        run_local([str(tmp_path / "bad.parquet")], parse_policy(POLICY), foreign)
    assert (foreign / "keep.parquet").exists()


def test_cli_simulate_check_and_batch(tmp_path: Path) -> None:
    runner = CliRunner()
    sim = runner.invoke(
        app, ["simulate", "--devices", "300", "--landmarks", "6", "--out", str(tmp_path / "f")]
    )
    assert sim.exit_code == 0, sim.output
    assert "false VERIFIED: 0" in sim.output
    out = tmp_path / "v"
    res = runner.invoke(
        app,
        ["batch", "--input", str(tmp_path / "f" / "measurements"), "--output", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(out)) == len(pd.read_parquet(tmp_path / "f" / "verdicts"))
    bad = runner.invoke(app, ["batch", "--input", str(tmp_path / "none*"), "--output", str(out)])
    assert bad.exit_code == 2
    assert "no Parquet files" in bad.output
    bad = runner.invoke(
        app, ["batch", "--input", str(out), "--output", str(tmp_path / "w"), "--policy", "x:1"]
    )
    assert bad.exit_code == 2
    assert "unknown policy" in bad.output
