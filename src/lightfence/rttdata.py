"""Load an RTT data set in the rtt-public CSV schema (landmarks.csv, targets.csv, rtts.csv).

Validation is strict: a missing file or column, a number that does not parse, a coordinate out
of range, a non-positive RTT or a host id that no host file defines stops the load with a
`DatasetError` naming the file and line. Nothing is dropped silently; the one aggregation is the
documented one: several rows for the same pair (either direction) keep their minimum RTT, because
a minimum RTT is the number every use of the data needs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

import numpy as np
from numpy.typing import NDArray

HOST_COLUMNS = ("id", "lat", "lon", "country_iso2", "city", "source")
RTT_COLUMNS = ("src_id", "dst_id", "min_rtt_ms", "n_samples", "measured_at")
LANDMARKS_FILE = "landmarks.csv"
TARGETS_FILE = "targets.csv"
RTTS_FILE = "rtts.csv"


class DatasetError(ValueError):
    """The data set on disk does not follow the schema; the message says where and why."""


@dataclass(frozen=True)
class Host:
    """A host with a known position: a landmark, a target, or both."""

    id: str
    lat: float
    """WGS84 latitude, degrees."""
    lon: float
    """WGS84 longitude, degrees."""
    country_iso2: str
    city: str
    """Empty where the source names none (RIPE Atlas anchors)."""
    source: str


@dataclass(frozen=True, eq=False)
class Dataset:
    """Hosts and their pairwise minimum RTTs. Landmarks and targets may overlap."""

    hosts: dict[str, Host]
    """Every host by id (landmarks and targets together)."""
    landmark_ids: tuple[str, ...]
    target_ids: tuple[str, ...]
    index: dict[str, int]
    """Row/column of each host id in `rtt_matrix_ms`."""
    rtt_matrix_ms: NDArray[np.float64]
    """Symmetric (n, n) minimum RTT over both directions; NaN where the pair was not measured."""
    directory: str

    def rtt_ms(self, a: str, b: str) -> float | None:
        """Minimum RTT between hosts a and b over both directions; None if never measured."""
        for host_id in (a, b):
            if host_id not in self.index:
                raise KeyError(f"unknown host id {host_id!r}")
        value = float(self.rtt_matrix_ms[self.index[a], self.index[b]])
        return None if math.isnan(value) else value

    def landmark_rtts(self, target_id: str) -> list[tuple[Host, float]]:
        """(landmark, RTT ms) for every landmark measured with the target, the target left out.

        Leaving the target out matters because most hosts are both: a target that is its own
        landmark would be located trivially at its true position.
        """
        if target_id not in self.index:
            raise KeyError(f"unknown target id {target_id!r}")
        row = self.rtt_matrix_ms[self.index[target_id]]
        pairs: list[tuple[Host, float]] = []
        for landmark_id in self.landmark_ids:
            if landmark_id == target_id:
                continue
            value = float(row[self.index[landmark_id]])
            if not math.isnan(value):
                pairs.append((self.hosts[landmark_id], value))
        return pairs

    def landmark_pairs(self) -> Iterator[tuple[str, str, float]]:
        """Each measured unordered landmark-to-landmark pair once: (a, b, RTT ms), a < b."""
        ids = sorted(self.landmark_ids)
        for i, a in enumerate(ids):
            row = self.rtt_matrix_ms[self.index[a]]
            for b in ids[i + 1 :]:
                value = float(row[self.index[b]])
                if not math.isnan(value):
                    yield a, b, value


def default_data_dir() -> Path:
    """The public RTT data shipped inside the package (works from a wheel or a fresh clone)."""
    return Path(str(resources.files("lightfence").joinpath("data", "rtt-public")))


def load_dataset(directory: str | Path | None = None) -> Dataset:
    """Load and validate a data set directory; the packaged public data when none is given."""
    base = Path(directory) if directory is not None else default_data_dir()
    if not base.is_dir():
        raise DatasetError(f"{base}: not a directory")
    landmarks = _read_hosts(base / LANDMARKS_FILE)
    targets = _read_hosts(base / TARGETS_FILE)
    hosts: dict[str, Host] = {}
    for host in [*landmarks, *targets]:
        known = hosts.get(host.id)
        if known is not None and known != host:
            raise DatasetError(
                f"{base / TARGETS_FILE}: host {host.id!r} differs from its row in {LANDMARKS_FILE}"
            )
        hosts[host.id] = host
    index = {host_id: i for i, host_id in enumerate(hosts)}
    matrix = np.full((len(hosts), len(hosts)), np.nan)
    for src, dst, rtt in _read_rtts(base / RTTS_FILE, index):
        i, j = index[src], index[dst]
        current = matrix[i, j]
        if math.isnan(current) or rtt < current:
            matrix[i, j] = matrix[j, i] = rtt
    return Dataset(
        hosts=hosts,
        landmark_ids=tuple(h.id for h in landmarks),
        target_ids=tuple(h.id for h in targets),
        index=index,
        rtt_matrix_ms=matrix,
        directory=str(base),
    )


def _open_csv(path: Path, columns: Sequence[str]) -> tuple[TextIO, Iterator[dict[str, str]]]:
    if not path.is_file():
        raise DatasetError(f"{path}: file missing")
    handle = path.open(newline="", encoding="utf-8")
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
        handle.close()
        raise DatasetError(f"{path}:1: missing column(s) {', '.join(missing)}")
    return handle, iter(reader)


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    try:
        value = float(text if text is not None else "")
    except ValueError:
        raise DatasetError(f"{path}:{line}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path}:{line}: {column} is not a finite number: {text!r}")
    return value


def _read_hosts(path: Path) -> list[Host]:
    handle, rows = _open_csv(path, HOST_COLUMNS)
    hosts: list[Host] = []
    seen: set[str] = set()
    with handle:
        for line, row in enumerate(rows, start=2):
            host_id = (row["id"] or "").strip()
            if not host_id:
                raise DatasetError(f"{path}:{line}: empty host id")
            if host_id in seen:
                raise DatasetError(f"{path}:{line}: duplicate host id {host_id!r}")
            seen.add(host_id)
            lat = _number(path, line, "lat", row["lat"])
            lon = _number(path, line, "lon", row["lon"])
            if not -90.0 <= lat <= 90.0:
                raise DatasetError(f"{path}:{line}: lat {lat} out of range [-90, 90]")
            if not -180.0 <= lon <= 180.0:
                raise DatasetError(f"{path}:{line}: lon {lon} out of range [-180, 180]")
            country = (row["country_iso2"] or "").strip()
            if len(country) != 2 or not country.isalpha() or not country.isupper():
                raise DatasetError(f"{path}:{line}: country_iso2 {country!r} is not two letters")
            hosts.append(Host(host_id, lat, lon, country, row["city"] or "", row["source"] or ""))
    return hosts


def _read_rtts(path: Path, index: dict[str, int]) -> Iterator[tuple[str, str, float]]:
    handle, rows = _open_csv(path, RTT_COLUMNS)
    with handle:
        for line, row in enumerate(rows, start=2):
            src = (row["src_id"] or "").strip()
            dst = (row["dst_id"] or "").strip()
            for column, host_id in (("src_id", src), ("dst_id", dst)):
                if host_id not in index:
                    raise DatasetError(
                        f"{path}:{line}: {column} {host_id!r} is in neither "
                        f"{LANDMARKS_FILE} nor {TARGETS_FILE}"
                    )
            if src == dst:
                raise DatasetError(f"{path}:{line}: a host paired with itself ({src!r})")
            rtt = _number(path, line, "min_rtt_ms", row["min_rtt_ms"])
            if rtt <= 0.0:
                raise DatasetError(f"{path}:{line}: min_rtt_ms must be positive, got {rtt}")
            samples = (row["n_samples"] or "").strip()
            if samples and (not samples.isdigit() or int(samples) == 0):
                raise DatasetError(
                    f"{path}:{line}: n_samples must be empty or a positive integer: {samples!r}"
                )
            yield src, dst, rtt
