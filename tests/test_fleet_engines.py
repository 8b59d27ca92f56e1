"""The local and Ray engines give the kernel's verdicts, one per device, whatever the layout."""

from __future__ import annotations

import json
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
from lightfence.fleet.engine_local import (
    MANIFEST,
    EngineError,
    expand_inputs,
    run_local,
    write_verdicts,
)
from lightfence.fleet.kernel import verdicts_for_frame
from lightfence.fleet.simulate import simulate_fleet, write_fleet

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


def _manifest_engine(out: Path) -> str:
    return str(json.loads((out / MANIFEST).read_text(encoding="utf-8"))["engine"])


def test_ray_auto_layout_shuffles_scattered_rows_and_by_file_refuses_them(
    scattered: tuple[Path, pd.DataFrame], tmp_path: Path, ray_cluster: None
) -> None:
    from lightfence.fleet.engine_ray import Layout, run_ray

    root, expected = scattered
    files = expand_inputs(str(root))
    run_ray(files, parse_policy(POLICY), tmp_path / "auto", workers=2, layout=Layout.AUTO)
    assert _manifest_engine(tmp_path / "auto") == "ray:2:shuffle"
    _same(_read(tmp_path / "auto"), expected)
    with pytest.raises(EngineError, match=r"not laid out by device.*overlap"):
        run_ray(files, parse_policy(POLICY), tmp_path / "strict", workers=2, layout=Layout.BY_FILE)
    assert not list((tmp_path / "strict").glob("*.parquet"))


def test_ray_by_file_plan_decides_whole_devices_without_a_shuffle(
    tmp_path: Path, ray_cluster: None
) -> None:
    from lightfence.fleet.engine_ray import Layout, run_ray

    fleet = simulate_fleet(500, 6, seed=8)
    files = [str(f) for f in write_fleet(fleet, tmp_path / "f", 900, 200)]
    expected = verdicts_for_frame(fleet.measurements, parse_policy(POLICY))
    expected = expected.sort_values("device_id").reset_index(drop=True)
    out = tmp_path / "v"
    result = run_ray(files, parse_policy(POLICY), out, 2, Layout.BY_FILE, unit_rows=300)
    assert _manifest_engine(out) == "ray:2:by-file"
    assert result.devices == len(expected)
    assert result.rows == fleet.measurements.num_rows
    assert len(result.output_files) > len(files)  # split at row groups, one verdict file each
    _same(_read(out), expected)
    # Each verdict file came from one unit, and no device is in two of them.
    per_file = [set(pd.read_parquet(f)["device_id"]) for f in result.output_files]
    assert sum(len(s) for s in per_file) == len(set().union(*per_file))


def test_a_device_decided_twice_fails_loudly_and_keeps_nothing(tmp_path: Path) -> None:
    from lightfence.fleet.engine_ray import _check_each_device_once

    frame = pd.DataFrame({"device_id": [1, 2], "verdict": ["VERIFIED"] * 2, "n_landmarks": [3, 3]})
    write_verdicts(frame, tmp_path / "part-00000.parquet")
    write_verdicts(frame.iloc[1:], tmp_path / "part-00001.parquet")
    with pytest.raises(EngineError, match="device 2 was decided in two units"):
        _check_each_device_once(tmp_path)
    assert not list(tmp_path.glob("*.parquet"))


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
