"""The Ray Data batch engine: the same kernel, spread over Ray workers.

Rows are hashed on device_id into buckets, grouped by bucket (Ray Data's groupby guarantees a
group reaches one call whole), so a device's rows never split across kernel calls. Each call
parses the policy text itself: Region objects hold prepared geometries that are cheaper to
rebuild once per worker (cached) than to ship with every task.

Start Ray with `start_ray(workers)` before timing anything: start-up takes seconds and is not
part of a batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

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
    EngineResult,
    prepare_output,
    read_schema_columns,
    write_manifest,
)
from lightfence.fleet.kernel import verdicts_for_frame

BUCKET_COLUMN = "_lightfence_bucket"
BUCKETS_PER_WORKER = 8
"""Kernel calls per worker: enough to balance load, few enough to amortise each call."""


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


def stop_ray() -> None:

    if ray.is_initialized():
        ray.shutdown()


def _add_bucket(batch: pa.Table, buckets: int) -> pa.Table:
    ids = batch.column("device_id").to_numpy(zero_copy_only=False)
    bucket = pd.util.hash_array(np.asarray(ids)) % np.uint64(buckets)
    return batch.append_column(BUCKET_COLUMN, pa.array(bucket.astype(np.int32)))


def _decide_group(group: pa.Table, policy_text: str, bound: str) -> pa.Table:
    policy = parse_policy(policy_text, bound)
    frame = verdicts_for_frame(group.drop_columns([BUCKET_COLUMN]), policy)
    return pa.Table.from_pandas(frame, preserve_index=False)


def run_ray(
    input_files: Sequence[str],
    policy: Policy,
    output_dir: Path,
    workers: int,
) -> EngineResult:
    """Verdicts for every device in `input_files`, written by Ray Data as Parquet files.

    Ray must already run (start_ray); `workers` sets the number of buckets.
    """

    if not ray.is_initialized():
        raise RuntimeError("start_ray(workers) first: Ray start-up is kept out of the batch")
    t0 = time.perf_counter()
    prepare_output(output_dir)
    columns = read_schema_columns(input_files)
    buckets = max(1, workers) * BUCKETS_PER_WORKER
    ds = ray.data.read_parquet(list(input_files), filesystem=LocalFileSystem())
    ds = ds.select_columns(columns)
    ds = ds.map_batches(partial(_add_bucket, buckets=buckets), batch_format="pyarrow")
    decide = partial(_decide_group, policy_text=policy.text, bound=policy.bound.value)
    grouped = ds.groupby(BUCKET_COLUMN, num_partitions=buckets)
    verdicts = grouped.map_groups(decide, batch_format="pyarrow")
    verdicts.write_parquet(str(output_dir))
    files = tuple(sorted(output_dir.glob("*.parquet")))
    landmarks = [pq.read_table(f, columns=["n_landmarks"]).column(0) for f in files]
    result = EngineResult(
        devices=sum(len(c) for c in landmarks),
        rows=sum(int(pc.sum(c).as_py() or 0) for c in landmarks),
        seconds=time.perf_counter() - t0,
        output_files=files,
    )
    write_manifest(output_dir, policy, f"ray:{workers}", result)
    return result
