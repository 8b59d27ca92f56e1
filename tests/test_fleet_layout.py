"""fleet.layout: a shuffle-free plan only where the Parquet statistics prove that no device has
rows in two units, and then every row in exactly one unit."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.fleet.layout import NotByDevice, plan_units, read_unit
from lightfence.fleet.simulate import simulate_fleet, write_fleet


def _write(path: Path, ids: list[int] | list[str], row_groups: list[int]) -> str:
    """A measurement-like file with the given device ids, cut into row groups of given sizes."""
    table = pa.table({"device_id": ids, "min_rtt_ms": np.arange(len(ids), dtype=np.float64)})
    with pq.ParquetWriter(path, table.schema) as writer:
        start = 0
        for size in row_groups:
            writer.write_table(table.slice(start, size), row_group_size=max(size, 1))
            start += size
    return str(path)


def test_simulated_fleet_is_split_by_row_group(tmp_path: Path) -> None:
    fleet = simulate_fleet(600, 5, seed=3)
    files = [str(f) for f in write_fleet(fleet, tmp_path, 1000, 300)]
    units = plan_units(files, target_rows=600)
    assert len(units) > len(files)  # files split at row groups
    seen: set[object] = set()
    rows = 0
    for unit in units:
        ids = read_unit(unit, ["device_id"]).column(0).to_pylist()
        assert not set(ids) & seen
        seen |= set(ids)
        rows += len(ids)
        assert unit.rows == len(ids)
    assert rows == fleet.measurements.num_rows


def test_overlapping_files_are_refused_with_both_names(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.parquet", [1, 1, 2, 5], [4])
    b = _write(tmp_path / "b.parquet", [5, 6, 7], [3])
    with pytest.raises(NotByDevice, match=r"a\.parquet.*b\.parquet|b\.parquet.*a\.parquet"):
        plan_units([a, b])
    # A shared id anywhere in the range is enough to refuse: 3 lies inside a's 1..5.
    c = _write(tmp_path / "c.parquet", [3], [1])
    with pytest.raises(NotByDevice):
        plan_units([a, c])


def test_a_row_group_boundary_inside_a_device_keeps_the_file_whole(tmp_path: Path) -> None:
    f = _write(tmp_path / "f.parquet", [1, 2, 2, 3, 4], [2, 3])  # device 2 spans both groups
    (unit,) = plan_units([f], target_rows=1)
    assert unit.row_groups == ()
    assert unit.rows == 5


def test_string_ids_and_missing_statistics(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.parquet", ["gpu-a", "gpu-b"], [2])
    b = _write(tmp_path / "b.parquet", ["gpu-c"], [1])
    assert [u.path for u in plan_units([b, a])] == [a, b]
    table = pa.table({"device_id": [1, 2]})
    pq.write_table(table, tmp_path / "nostats.parquet", write_statistics=False)
    with pytest.raises(NotByDevice, match="no min/max"):
        plan_units([str(tmp_path / "nostats.parquet")])
    pq.write_table(pa.table({"x": [1]}), tmp_path / "noid.parquet")
    with pytest.raises(NotByDevice, match="no device_id"):
        plan_units([str(tmp_path / "noid.parquet")])


# Files as lists of row groups, each a list of device ids (any order, repeats allowed).
layouts = st.lists(
    st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=6), min_size=1, max_size=3),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60)
@given(layouts, st.integers(1, 12))
def test_a_plan_never_splits_a_device_and_covers_every_row(
    layout: list[list[list[int]]], target_rows: int
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lf-layout-"))
    try:
        files = [
            _write(tmp / f"f{i}.parquet", list(itertools.chain(*groups)), [len(g) for g in groups])
            for i, groups in enumerate(layout)
        ]
        try:
            units = plan_units(files, target_rows)
        except NotByDevice:
            # Refused: then some device really is, or may be, in two files or row groups. For
            # this check it suffices that two files' id ranges overlap, or (one file) that the
            # file is valid as one unit, which the planner would then have returned.
            ranges = sorted((min(itertools.chain(*g)), max(itertools.chain(*g))) for g in layout)
            assert any(a[1] >= b[0] for a, b in itertools.pairwise(ranges))
            return
        owner: dict[int, int] = {}
        rows = 0
        for n, unit in enumerate(units):
            ids = read_unit(unit, ["device_id"]).column(0).to_pylist()
            rows += len(ids)
            for device in ids:
                assert owner.setdefault(device, n) == n  # never in two units
        assert rows == sum(len(g) for groups in layout for g in groups)
    finally:
        shutil.rmtree(tmp)
