"""The Ray Data batch engine: the same kernel, spread over Ray workers.

Two plans, one guarantee: a device's rows never split across kernel calls.

* by-file (no shuffle): when the Parquet metadata proves that no device has rows in two units
  (files, or runs of row groups; see fleet.layout), each unit is one Ray Data task that reads
  it, runs the kernel and writes its verdict file. Nothing moves between workers. After the
  run the verdicts are checked for a device decided twice, so a layout that changed under the
  run still fails loudly.
* shuffle: any other input. Rows are hashed on device_id into buckets, grouped by bucket (Ray
  Data's groupby hands a group to one call whole) and decided per bucket.

`layout="auto"` takes by-file when the metadata allows it, shuffle otherwise; "by-file" refuses
input that does not allow it (EngineError naming the overlapping files).

Workers parse the policy text once and keep it, with its regions' boundary indexes, for later
calls (a worker's first call builds them: about 2 s for outside:CN,HK,MO). Start Ray with
`start_ray(workers)` before timing anything: start-up takes seconds and is not part of a batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from pyarrow.fs import LocalFileSystem
from ray.data.context import ShuffleStrategy

from lightfence.core.policy import Policy, parse_policy
from lightfence.fleet.engine_local import (
    EngineError,
    EngineResult,
    prepare_output,
    read_schema_columns,
    write_manifest,
    write_verdicts,
)
from lightfence.fleet.kernel import verdicts_for_frame
from lightfence.fleet.layout import TARGET_UNIT_ROWS, NotByDevice, Unit, plan_units, read_unit


class Layout(StrEnum):
    AUTO = "auto"
    BY_FILE = "by-file"
    SHUFFLE = "shuffle"


BUCKET_COLUMN = "_lightfence_bucket"
BUCKETS_PER_WORKER = 8
"""Kernel calls per worker in the shuffle plan: enough to balance load, few enough to amortise."""

PolicyKey = tuple[str, str, str]
"""(text, bound, liars): what a worker needs to rebuild the policy."""

_POLICIES: dict[PolicyKey, Policy] = {}


def start_ray(workers: int) -> None:
    """Start (or restart with a new size) a local Ray with `workers` CPUs, no dashboard."""

    if ray.is_initialized():
        if int(ray.cluster_resources().get("CPU", 0)) == workers:  # type: ignore[no-untyped-call]
            return
        ray.shutdown()
    ray.init(
        num_cpus=workers,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # Task-based sort shuffle: the kernel then runs in pooled workers that keep the policy's
    # regions cached between batches (hash shuffle runs it in fresh aggregator actors).
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ctx.min_parallelism = workers
    # Per-operator reservations hold back part of the CPUs at the start of each job: on 2 CPUs
    # the second by-file task started about one task-length late (measured: 6 one-second tasks
    # took 4.4 s with reservations, 3.2 s without).
    ctx.op_resource_reservation_enabled = False


def stop_ray() -> None:

    if ray.is_initialized():
        ray.shutdown()


def _policy_key(policy: Policy) -> PolicyKey:
    return (policy.text, policy.bound.value, str(policy.liars))


def _worker_policy(key: PolicyKey) -> Policy:
    """The policy in this worker process, parsed once: its regions build their boundary indexes
    on first use, which later calls in the same process then reuse."""
    if key not in _POLICIES:
        _POLICIES[key] = parse_policy(*key)
    return _POLICIES[key]


def _decide_units(
    batch: dict[str, np.ndarray],
    units: Sequence[Unit],
    columns: Sequence[str],
    key: PolicyKey,
    output_dir: str,
) -> dict[str, np.ndarray]:
    """One call of the by-file plan: decide each unit named in the batch whole, write its file."""
    policy = _worker_policy(key)
    done: dict[str, list[int]] = {"unit": [], "devices": [], "rows": []}
    for i in batch["unit"].tolist():
        table = read_unit(units[i], columns)
        verdicts = verdicts_for_frame(table, policy)
        write_verdicts(verdicts, Path(output_dir) / f"part-{i:05d}.parquet")
        done["unit"].append(i)
        done["devices"].append(len(verdicts))
        done["rows"].append(table.num_rows)
    return {name: np.asarray(values, dtype=np.int64) for name, values in done.items()}


def _add_bucket(batch: pa.Table, buckets: int) -> pa.Table:
    ids = batch.column("device_id").to_numpy(zero_copy_only=False)
    bucket = pd.util.hash_array(np.asarray(ids)) % np.uint64(buckets)
    return batch.append_column(BUCKET_COLUMN, pa.array(bucket.astype(np.int32)))


def _decide_group(group: pa.Table, key: PolicyKey) -> pa.Table:
    frame = verdicts_for_frame(group.drop_columns([BUCKET_COLUMN]), _worker_policy(key))
    return pa.Table.from_pandas(frame, preserve_index=False)


def run_ray(
    input_files: Sequence[str],
    policy: Policy,
    output_dir: Path,
    workers: int,
    layout: Layout = Layout.AUTO,
    unit_rows: int = TARGET_UNIT_ROWS,
) -> EngineResult:
    """Verdicts for every device in `input_files`, written by Ray Data as Parquet files.

    Ray must already run (start_ray); the by-file plan runs on every CPU it has, in units of
    about `unit_rows` rows where row groups allow, and `workers` sets the number of buckets of
    the shuffle plan.
    """

    if not ray.is_initialized():
        raise RuntimeError("start_ray(workers) first: Ray start-up is kept out of the batch")
    t0 = time.perf_counter()
    prepare_output(output_dir)
    columns = read_schema_columns(input_files)
    units: list[Unit] | None = None
    if layout is not Layout.SHUFFLE:
        try:
            units = plan_units(input_files, unit_rows)
        except NotByDevice as exc:
            if layout is Layout.BY_FILE:
                raise EngineError(
                    f"input is not laid out by device: {exc}. Run with --layout shuffle "
                    "(or auto) to group the rows by device first"
                ) from exc
    if units is not None:
        devices, rows = _run_by_file(units, columns, policy, output_dir)
        plan = Layout.BY_FILE
    else:
        devices, rows = _run_shuffle(input_files, columns, policy, output_dir, workers)
        plan = Layout.SHUFFLE
    result = EngineResult(
        devices=devices,
        rows=rows,
        seconds=time.perf_counter() - t0,
        output_files=tuple(sorted(output_dir.glob("*.parquet"))),
    )
    write_manifest(output_dir, policy, f"ray:{workers}:{plan.value}", result)
    return result


def _run_by_file(
    units: list[Unit], columns: Sequence[str], policy: Policy, output_dir: Path
) -> tuple[int, int]:
    if not units:
        return 0, 0
    # One block per unit, so each call gets one unit and the workers share them as they free up.
    items = [{"unit": i} for i in range(len(units))]
    ds = ray.data.from_items(items, override_num_blocks=len(units))
    decide = partial(
        _decide_units,
        units=units,
        columns=list(columns),
        key=_policy_key(policy),
        output_dir=str(output_dir),
    )
    # Tasks, not actors: Ray keeps its worker processes between jobs, and with them each
    # process's parsed policy and boundary indexes, so an hourly batch on a standing cluster
    # starts warm; an actor pool would rebuild them on every run.
    done = ds.map_batches(decide, batch_size=1, batch_format="numpy", num_cpus=1).take_all()
    _check_each_device_once(output_dir)
    return sum(int(r["devices"]) for r in done), sum(int(r["rows"]) for r in done)


def _check_each_device_once(output_dir: Path) -> None:
    """The layout was proved from metadata before the run; this checks the result itself, so a
    device split across units (input rewritten during the run, say) fails loudly."""
    files = sorted(output_dir.glob("*.parquet"))
    if not files:
        return
    ids = pa.chunked_array(
        [pq.read_table(f, columns=["device_id"]).column(0) for f in files]
    ).to_numpy(zero_copy_only=False)
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        twice: Any = values[np.flatnonzero(counts > 1)[0]].item()
        for path in files:
            path.unlink()
        raise EngineError(
            f"device {twice!r} was decided in two units: its rows are in two input files or row "
            "groups; no verdicts were kept. Run with --layout shuffle"
        )


def _run_shuffle(
    input_files: Sequence[str],
    columns: Sequence[str],
    policy: Policy,
    output_dir: Path,
    workers: int,
) -> tuple[int, int]:
    buckets = max(1, workers) * BUCKETS_PER_WORKER
    ds = ray.data.read_parquet(list(input_files), filesystem=LocalFileSystem())
    ds = ds.select_columns(list(columns))
    ds = ds.map_batches(partial(_add_bucket, buckets=buckets), batch_format="pyarrow")
    decide = partial(_decide_group, key=_policy_key(policy))
    grouped = ds.groupby(BUCKET_COLUMN, num_partitions=buckets)
    verdicts = grouped.map_groups(decide, batch_format="pyarrow")
    verdicts.write_parquet(str(output_dir))
    files = sorted(output_dir.glob("*.parquet"))
    landmarks = [pq.read_table(f, columns=["n_landmarks"]).column(0) for f in files]
    devices = sum(len(c) for c in landmarks)
    rows = sum(int(pc.sum(c).as_py() or 0) for c in landmarks)
    return devices, rows
