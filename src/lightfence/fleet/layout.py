"""Whether measurement files already keep each device in one place, from Parquet metadata only.

A distributed engine may hand the kernel one file (or one run of row groups) at a time, with no
shuffle, only if no device's rows are in two such units. That is proved here from the min/max
statistics of `device_id` that Parquet writers store per row group: if the [min, max] ranges of
the units are pairwise disjoint, no id can be in two of them. Nothing is read but the footers.

When the ranges overlap (rows shuffled, ids hashed, statistics missing), `plan_units` says why,
and the engine groups by device instead (or, asked for this layout explicitly, refuses the input).
The simulator writes this layout (`fleet.simulate.write_fleet`): files and row groups cut on
device boundaries, ids ascending.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TARGET_UNIT_ROWS = 250_000
"""Rows per unit when a file's row groups can be split: enough to amortise a task (a few ms),
small enough that 2 workers finish within a unit of each other."""


@dataclass(frozen=True)
class Unit:
    """Rows of one file that hold every row of their devices: a whole file or a run of its
    row groups."""

    path: str
    row_groups: tuple[int, ...]
    rows: int
    first_id: Any
    last_id: Any


@dataclass(frozen=True)
class _Group:
    path: str
    index: int
    rows: int
    lo: Any
    hi: Any


class NotByDevice(ValueError):
    """The files do not provably keep each device in one unit; the message says where."""


def plan_units(files: Sequence[str], target_rows: int = TARGET_UNIT_ROWS) -> list[Unit]:
    """Units for a shuffle-free run, in ascending device order. Raises NotByDevice."""
    per_file = [_row_groups(path) for path in files]
    try:
        spans = sorted(
            ((g[0].lo, g[-1].hi, g[0].path, g) for g in per_file if g),
            key=lambda s: (s[0], s[1]),
        )
    except TypeError as exc:
        raise NotByDevice(f"device ids of different types across files ({exc})") from exc
    for (_, hi_a, path_a, groups_a), (lo_b, _, path_b, groups_b) in itertools.pairwise(spans):
        if not hi_a < lo_b:
            raise NotByDevice(
                f"device ids of {path_a} ({groups_a[0].lo}..{hi_a}) and {path_b} "
                f"({lo_b}..{groups_b[-1].hi}) overlap: a device may have rows in both files"
            )
    units: list[Unit] = []
    for _, _, path, groups in spans:
        units += _split(path, groups, target_rows)
    return units


def _row_groups(path: str) -> list[_Group]:
    """The row groups of a file with their device-id range, widened to the file's range when
    the row groups are not in strictly ascending, disjoint order (then the file is one unit)."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowInvalid) as exc:
        raise NotByDevice(f"{path}: not a readable Parquet file ({exc})") from exc
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if "device_id" not in names:
        raise NotByDevice(f"{path}: no device_id column")
    col = names.index("device_id")
    groups: list[_Group] = []
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        if rg.num_rows == 0:
            continue
        stats = rg.column(col).statistics
        if stats is None or not stats.has_min_max:
            raise NotByDevice(f"{path}: row group {i} stores no min/max of device_id")
        if stats.null_count:
            raise NotByDevice(f"{path}: row group {i} has null device ids")
        groups.append(_Group(path, i, rg.num_rows, stats.min, stats.max))
    if not groups:
        return []
    try:
        ascending = all(a.hi < b.lo for a, b in itertools.pairwise(groups))
        lo = min(g.lo for g in groups)
        hi = max(g.hi for g in groups)
    except TypeError as exc:
        raise NotByDevice(f"{path}: device ids of different types ({exc})") from exc
    if ascending:
        return groups
    whole = _Group(path, -1, sum(g.rows for g in groups), lo, hi)
    return [whole]


def _split(path: str, groups: list[_Group], target_rows: int) -> list[Unit]:
    if len(groups) == 1 and groups[0].index == -1:
        g = groups[0]
        return [Unit(path, (), g.rows, g.lo, g.hi)]
    units: list[Unit] = []
    run: list[_Group] = []
    for g in groups:
        if run and sum(r.rows for r in run) + g.rows > target_rows:
            units.append(_unit(path, run))
            run = []
        run.append(g)
    if run:
        units.append(_unit(path, run))
    return units


def _unit(path: str, run: list[_Group]) -> Unit:
    return Unit(
        path=path,
        row_groups=tuple(g.index for g in run),
        rows=sum(g.rows for g in run),
        first_id=run[0].lo,
        last_id=run[-1].hi,
    )


def read_unit(unit: Unit, columns: Sequence[str]) -> pa.Table:
    """The unit's rows (`columns` only); an empty row_groups tuple means the whole file."""
    if not unit.row_groups:
        return pq.read_table(unit.path, columns=list(columns))
    return pq.ParquetFile(unit.path).read_row_groups(list(unit.row_groups), columns=list(columns))
