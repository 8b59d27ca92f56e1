"""The local batch engine: read measurement Parquet, verdicts per device, write Parquet.

One process. Devices are grouped once (hash, then a stable integer sort), cut into chunks of
whole devices and handed to the kernel chunk by chunk, so memory stays bounded by the input and
progress can be shown. Also the shared I/O helpers of the engines.
"""

from __future__ import annotations

import glob
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lightfence.core.policy import Policy
from lightfence.fleet.kernel import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, verdicts_for_frame

CHUNK_DEVICES = 50_000
"""Devices per kernel call: large enough to amortise, small enough for steady progress."""

MANIFEST = "_lightfence.json"
"""Written beside the verdict files: policy, bound, engine, counts."""

Progress = Callable[[int], None]
"""Called with the number of devices just finished."""


class EngineError(ValueError):
    """Input or output the engine cannot work with (no files, unreadable Parquet, ...)."""


@dataclass(frozen=True)
class EngineResult:
    devices: int
    rows: int
    seconds: float
    """Wall time of reading, deciding and writing (engine start-up excluded)."""
    output_files: tuple[Path, ...]


def expand_inputs(pattern: str) -> list[str]:
    """Files matching a glob (a directory means every *.parquet under it), sorted."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
    else:
        files = sorted(glob.glob(pattern, recursive=True))
    if not files:
        raise EngineError(f"no Parquet files match {pattern!r}")
    return files


def read_schema_columns(files: Sequence[str]) -> list[str]:
    """The kernel columns present in every file; a file without a required column is an error."""
    present: list[str] | None = None
    for name in files:
        try:
            schema = pq.read_schema(name)
        except (OSError, pa.ArrowInvalid) as exc:
            raise EngineError(f"{name}: not a readable Parquet file ({exc})") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
        if missing:
            raise EngineError(f"{name}: missing column(s) {', '.join(missing)}")
        cols = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in schema.names]
        if present is not None and cols != present:
            raise EngineError(f"{name}: columns {cols} differ from the other files' {present}")
        present = cols
    return present or list(REQUIRED_COLUMNS)


def read_measurements(files: Sequence[str]) -> pa.Table:
    """The kernel's columns from every file, concatenated."""
    columns = read_schema_columns(files)
    return pa.concat_tables([pq.read_table(name, columns=columns) for name in files])


def prepare_output(output_dir: Path) -> None:
    """Create the directory; clear an earlier run's verdicts (found by its manifest) only."""
    output_dir.mkdir(parents=True, exist_ok=True)
    old = list(output_dir.glob("*.parquet"))
    if old and not (output_dir / MANIFEST).exists():
        raise EngineError(
            f"{output_dir} holds Parquet files that are not lightfence verdicts; "
            "choose an empty or new output directory"
        )
    for path in old:
        path.unlink()
    (output_dir / MANIFEST).unlink(missing_ok=True)


def write_manifest(output_dir: Path, policy: Policy, engine: str, result: EngineResult) -> None:
    """What a VERIFIED in this directory promises, and how it was computed."""
    manifest = {
        "policy": policy.text,
        "bound": policy.bound.value,
        "engine": engine,
        "devices": result.devices,
        "rows": result.rows,
        "seconds": round(result.seconds, 3),
    }
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def write_verdicts(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def group_by_device(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Rows reordered so each device's rows are contiguous, and the device start offsets."""
    if table.num_rows == 0:
        return table, np.zeros(1, dtype=np.int64)
    ids = table.column("device_id").to_numpy(zero_copy_only=False)
    codes, _ = pd.factorize(ids, use_na_sentinel=True)
    if np.any(codes < 0):
        raise EngineError("device_id must not be null")
    if np.any(codes[1:] < codes[:-1]):
        order = np.argsort(codes, kind="stable")
        table = table.take(pa.array(order))
        codes = codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
    return table, starts


def run_local(
    input_files: Sequence[str],
    policy: Policy,
    output_dir: Path,
    chunk_devices: int = CHUNK_DEVICES,
    progress: Progress | None = None,
) -> EngineResult:
    """Verdicts for every device in `input_files`, written to output_dir/part-NNNNN.parquet."""
    t0 = time.perf_counter()
    prepare_output(output_dir)
    table, starts = group_by_device(read_measurements(input_files))
    devices = len(starts) - 1
    written: list[Path] = []
    for lo in range(0, devices, chunk_devices):
        hi = min(lo + chunk_devices, devices)
        chunk = table.slice(int(starts[lo]), int(starts[hi] - starts[lo]))
        verdicts = verdicts_for_frame(chunk, policy)
        written.append(write_verdicts(verdicts, output_dir / f"part-{len(written):05d}.parquet"))
        if progress is not None:
            progress(hi - lo)
    result = EngineResult(
        devices=devices,
        rows=table.num_rows,
        seconds=time.perf_counter() - t0,
        output_files=tuple(written),
    )
    write_manifest(output_dir, policy, "local", result)
    return result
