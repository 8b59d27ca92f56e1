"""Reading the CSV files the coverage commands take: landmarks, sites, candidate positions.

Every reader checks its rows and raises InputError naming the file, the line and what to fix;
a bad row is never skipped silently.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO

import numpy as np

from lightfence.geo.naturalearth import UnknownCountry, country
from lightfence.geo.sphere import Float64Array


class InputError(ValueError):
    """A coverage input file that cannot be used as it is."""


@dataclass(frozen=True)
class Places:
    """Named points: landmarks, candidate landmark positions or sites."""

    names: tuple[str, ...]
    lat: Float64Array
    lon: Float64Array
    country: tuple[str | None, ...]
    """ISO alpha-2 code where the file gives one."""
    gpus: Float64Array
    """Weight of each place (GPUs at a site); ones where the file has none."""

    def __len__(self) -> int:
        return len(self.names)

    def take(self, idx: Iterable[int]) -> Places:
        sel = list(idx)
        return Places(
            names=tuple(self.names[i] for i in sel),
            lat=self.lat[sel],
            lon=self.lon[sel],
            country=tuple(self.country[i] for i in sel),
            gpus=self.gpus[sel],
        )

    def concat(self, other: Places) -> Places:
        return Places(
            names=self.names + other.names,
            lat=np.concatenate([self.lat, other.lat]),
            lon=np.concatenate([self.lon, other.lon]),
            country=self.country + other.country,
            gpus=np.concatenate([self.gpus, other.gpus]),
        )


def _rows(
    fh: IO[str], where: str, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(fh)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{where}: missing column(s) {', '.join(missing)}; expected a CSV header with "
            f"{','.join(required)}"
        )
    reader.fieldnames = header
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _number(value: str, what: str, where: str, line: int) -> float:
    try:
        x = float(value)
    except ValueError:
        raise InputError(f"{where} line {line}: {what} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise InputError(f"{where} line {line}: {what} must be finite")
    return x


def _read(fh: IO[str], where: str, name_col: str, with_country: bool, with_gpus: bool) -> Places:
    required: tuple[str, ...] = (name_col, "lat", "lon")
    if with_country:
        required += ("country",)
    if with_gpus:
        required += ("gpus",)
    names: list[str] = []
    lats: list[float] = []
    lons: list[float] = []
    codes: list[str | None] = []
    gpus: list[float] = []
    seen: set[str] = set()
    for line, row in _rows(fh, where, required):
        name = row[name_col]
        if not name:
            raise InputError(f"{where} line {line}: empty {name_col}")
        if name in seen:
            raise InputError(f"{where} line {line}: {name_col} {name!r} appears twice")
        seen.add(name)
        lat = _number(row["lat"], "lat", where, line)
        lon = _number(row["lon"], "lon", where, line)
        if not -90.0 <= lat <= 90.0 or not -180.0 <= lon <= 360.0:
            raise InputError(f"{where} line {line}: ({lat}, {lon}) is not a valid lat, lon")
        code = row.get("country") or row.get("country_iso2") or None
        if code:
            try:
                code = country(code).code
            except UnknownCountry as exc:
                raise InputError(f"{where} line {line}: {exc}") from None
        elif with_country:
            raise InputError(f"{where} line {line}: empty country")
        weight = 1.0
        if with_gpus:
            weight = _number(row["gpus"], "gpus", where, line)
            if weight < 0:
                raise InputError(f"{where} line {line}: gpus must be >= 0")
        names.append(name)
        lats.append(lat)
        lons.append(lon)
        codes.append(code)
        gpus.append(weight)
    if not names:
        raise InputError(f"{where}: no rows")
    return Places(
        names=tuple(names),
        lat=np.asarray(lats, dtype=np.float64),
        lon=np.asarray(lons, dtype=np.float64),
        country=tuple(codes),
        gpus=np.asarray(gpus, dtype=np.float64),
    )


def _open(path: Path, kind: str) -> IO[str]:
    try:
        return path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {kind} file {path}: {exc.strerror}") from None


def read_landmarks(path: Path) -> Places:
    """Landmarks: CSV with id,lat,lon (extra columns, as in the shipped rtt-public
    landmarks.csv, are allowed)."""
    with _open(path, "landmarks") as fh:
        try:
            return _read(fh, str(path), "id", with_country=False, with_gpus=False)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a UTF-8 CSV file") from None


def read_sites(path: Path) -> Places:
    """Sites whose GPUs must be verified: CSV with name,lat,lon,country,gpus."""
    with _open(path, "sites") as fh:
        try:
            return _read(fh, str(path), "name", with_country=True, with_gpus=True)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a UTF-8 CSV file") from None


def read_candidates(path: Path) -> Places:
    """Candidate landmark positions: CSV with name,lat,lon[,country]."""
    with _open(path, "candidates") as fh:
        try:
            return _read(fh, str(path), "name", with_country=False, with_gpus=False)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a UTF-8 CSV file") from None


def _packaged(*parts: str) -> IO[str]:
    ref = resources.files("lightfence").joinpath("data", *parts)
    return ref.open("r", encoding="utf-8")


def shipped_datacentre_cities() -> Places:
    """The data-centre cities shipped with lightfence (see data/datacentres/README.md)."""
    with _packaged("datacentres", "cities.csv") as fh:
        return _read(fh, "datacentres/cities.csv", "name", with_country=True, with_gpus=False)


def shipped_landmarks() -> Places:
    """The 239 landmarks of the shipped rtt-public data."""
    with _packaged("rtt-public", "landmarks.csv") as fh:
        return _read(fh, "rtt-public/landmarks.csv", "id", with_country=False, with_gpus=False)


def shipped_hosts() -> Places:
    """Every host of the shipped rtt-public data (landmarks and targets), once each."""
    places: dict[str, tuple[float, float, str | None]] = {}
    for name in ("landmarks.csv", "targets.csv"):
        with _packaged("rtt-public", name) as fh:
            got = _read(fh, f"rtt-public/{name}", "id", with_country=False, with_gpus=False)
        for i, host in enumerate(got.names):
            places[host] = (float(got.lat[i]), float(got.lon[i]), got.country[i])
    names = tuple(places)
    return Places(
        names=names,
        lat=np.asarray([places[n][0] for n in names]),
        lon=np.asarray([places[n][1] for n in names]),
        country=tuple(places[n][2] for n in names),
        gpus=np.ones(len(names)),
    )
