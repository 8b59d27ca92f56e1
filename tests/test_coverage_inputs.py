"""Coverage input files: accepted formats, and clear errors naming the line for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightfence.coverage.grid import country_of
from lightfence.coverage.inputs import (
    InputError,
    read_landmarks,
    read_sites,
    shipped_datacentre_cities,
    shipped_hosts,
    shipped_landmarks,
)

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_plain_and_rtt_public_landmark_files_are_accepted(tmp_path: Path) -> None:
    plain = read_landmarks(_write(tmp_path, "id,lat,lon\nfra,50.11,8.68\nsin,1.35,103.82\n"))
    assert plain.names == ("fra", "sin")
    shipped = read_landmarks(ROOT / "src/lightfence/data/rtt-public/landmarks.csv")
    assert len(shipped) == 239 == len(shipped_landmarks())
    assert len(shipped_hosts()) >= 239


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,lat,lon\na,1,2\n", "missing column(s) id"),
        ("id,lat,lon\na,91,2\n", "line 2"),
        ("id,lat,lon\na,x,2\n", "'x' is not a number"),
        ("id,lat,lon\na,1,2\na,3,4\n", "appears twice"),
        ("id,lat,lon\n", "no rows"),
        ("id,lat,lon\n,1,2\n", "empty id"),
    ],
)
def test_bad_landmark_files_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_landmarks(_write(tmp_path, text))


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read landmarks file"):
        read_landmarks(tmp_path / "absent.csv")


def test_sites_need_a_known_country_and_gpus(tmp_path: Path) -> None:
    ok = read_sites(_write(tmp_path, "name,lat,lon,country,gpus\nfra,50.1,8.6,de,64\n"))
    assert ok.country == ("DE",) and ok.gpus.tolist() == [64.0]
    with pytest.raises(InputError, match="unknown country code"):
        read_sites(_write(tmp_path, "name,lat,lon,country,gpus\nx,50.1,8.6,ZZ,64\n"))
    with pytest.raises(InputError, match="gpus must be >= 0"):
        read_sites(_write(tmp_path, "name,lat,lon,country,gpus\nx,50.1,8.6,DE,-1\n"))


def test_shipped_cities_and_example_sites_lie_in_their_countries() -> None:
    for places in (shipped_datacentre_cities(), read_sites(ROOT / "examples/coverage/sites.csv")):
        found = country_of(places.lat, places.lon)
        pairs = zip(places.names, places.country, found, strict=True)
        wrong = [(n, c, f) for n, c, f in pairs if c != f]
        assert not wrong
