"""The fleet kernel: a table of measurement rows in, one verdict per device out.

Every engine (local, Ray, the stream workers, the verifier service) calls `verdicts_for_frame`,
and it calls the core's `decide_batch`, so a verdict never depends on where it was computed.

Input columns (pandas DataFrame or Arrow table, one row per landmark measurement):

    device_id          any hashable id (string or integer)
    landmark_lat       landmark latitude, degrees
    landmark_lon       landmark longitude, degrees
    min_rtt_ms         minimum RTT the landmark measured, ms
    claimed_country    ISO 3166-1 alpha-2 code the device declares, or null
    floor_ms           optional: known processing time subtracted before the bound, ms
    position_error_km  optional: landmark survey error, km

Output: device_id, verdict (VerdictKind name), n_landmarks; one row per device, in order of
first appearance in the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import Policy, claimed_region

REQUIRED_COLUMNS = ("device_id", "landmark_lat", "landmark_lon", "min_rtt_ms", "claimed_country")
OPTIONAL_COLUMNS = ("floor_ms", "position_error_km")
OUTPUT_COLUMNS = ("device_id", "verdict", "n_landmarks")

_NAMES = np.array([VerdictKind.from_code(i).value for i in range(len(VerdictKind))], dtype=object)


class BadFrame(ValueError):
    """Input rows no verdict can come from: a missing column, a device with two claims."""


def verdicts_for_frame(frame: pd.DataFrame | pa.Table, policy: Policy) -> pd.DataFrame:
    """One verdict per device of `frame` under `policy` (see the module docstring)."""
    columns = _columns(frame)
    device_ids = columns["device_id"]
    n = len(device_ids)
    if n == 0:
        return _empty_output()
    # Hash grouping (no sort) gives codes in order of first appearance; already grouped input,
    # as the engines hand over, then needs no reordering at all.
    codes, uniques = pd.factorize(device_ids, use_na_sentinel=True)
    if np.any(codes < 0):
        raise BadFrame("device_id must not be null")
    codes = codes.astype(np.int64, copy=False)
    if np.any(codes[1:] < codes[:-1]):
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        columns = {name: col[order] for name, col in columns.items()}
    m = len(uniques)
    counts = np.bincount(codes, minlength=m)
    device_start = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=device_start[1:])
    claimed = _claims(columns["claimed_country"], device_start, uniques)
    table = MeasurementTable(
        device_start=device_start,
        lat_deg=_floats(columns["landmark_lat"], "landmark_lat"),
        lon_deg=_floats(columns["landmark_lon"], "landmark_lon"),
        rtt_ms=_floats(columns["min_rtt_ms"], "min_rtt_ms"),
        floor_ms=_floats(columns["floor_ms"], "floor_ms"),
        position_error_km=_floats(columns["position_error_km"], "position_error_km"),
    )
    result = decide_batch(table, policy, claimed)
    return pd.DataFrame(
        {
            "device_id": np.asarray(uniques),
            "verdict": _NAMES[result.kind.astype(np.int64)],
            "n_landmarks": counts,
        }
    )


def _empty_output() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "device_id": pd.Series([], dtype=object),
            "verdict": pd.Series([], dtype=object),
            "n_landmarks": pd.Series([], dtype=np.int64),
        }
    )


def _columns(frame: pd.DataFrame | pa.Table) -> dict[str, NDArray[Any]]:
    names = list(frame.column_names) if isinstance(frame, pa.Table) else list(frame.columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise BadFrame(
            f"missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED_COLUMNS)}"
        )
    out: dict[str, NDArray[Any]] = {}
    for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
        if name not in names:
            continue
        if isinstance(frame, pa.Table):
            out[name] = frame.column(name).to_numpy(zero_copy_only=False)
        else:
            out[name] = frame[name].to_numpy()
    n = len(out["device_id"])
    for name in OPTIONAL_COLUMNS:
        out.setdefault(name, np.zeros(n, dtype=np.float64))
    return out


def _floats(values: NDArray[Any], name: str) -> NDArray[np.float64]:
    try:
        return np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadFrame(f"column {name} must be numeric: {exc}") from exc


def _claims(
    values: NDArray[Any], device_start: NDArray[np.int64], uniques: Any
) -> list[str | None]:
    """The one declared country per device; a device declaring two countries is bad input."""
    codes, labels = pd.factorize(values, use_na_sentinel=True)
    first = codes[device_start[:-1]]
    per_row = np.repeat(first, np.diff(device_start))
    clash = np.flatnonzero(codes != per_row)
    if len(clash):
        row = int(clash[0])
        device = uniques[int(np.searchsorted(device_start, row, side="right") - 1)]
        raise BadFrame(f"device {device!r} declares more than one claimed_country in one batch")
    normalised: list[str | None] = []
    for label in labels:
        text = str(label).strip().upper()
        if text:
            claimed_region(text)  # an unknown code fails here, loudly, before any verdict
        normalised.append(text or None)
    lookup = np.array([*normalised, None], dtype=object)
    return list(lookup[first])
