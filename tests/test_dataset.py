"""The rtt-public loader: the shipped data loads, and every schema violation names file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lightfence.rttdata import DatasetError, default_data_dir, load_dataset

HOSTS_HEADER = "id,lat,lon,country_iso2,city,source\n"
RTTS_HEADER = "src_id,dst_id,min_rtt_ms,n_samples,measured_at\n"


def write_set(
    base: Path,
    landmarks: str = "a,1.0,2.0,FR,Paris,s\nb,3.0,4.0,DE,,s\nc,5.0,6.0,NL,,s\n",
    targets: str = "a,1.0,2.0,FR,Paris,s\n",
    rtts: str = "a,b,10.5,3,2020\nb,a,9.5,,2020\nb,c,7.0,,2020\n",
) -> Path:
    (base / "landmarks.csv").write_text(HOSTS_HEADER + landmarks, encoding="utf-8")
    (base / "targets.csv").write_text(HOSTS_HEADER + targets, encoding="utf-8")
    (base / "rtts.csv").write_text(RTTS_HEADER + rtts, encoding="utf-8")
    return base


def test_shipped_data_loads_with_the_documented_counts() -> None:
    data = load_dataset()
    assert len(data.landmark_ids) == 239
    assert len(data.target_ids) == 149
    assert Path(data.directory) == default_data_dir()
    assert (default_data_dir() / "README.md").is_file()


def test_rtt_is_the_minimum_over_both_directions(tmp_path: Path) -> None:
    data = load_dataset(write_set(tmp_path))
    assert data.rtt_ms("a", "b") == 9.5
    assert data.rtt_ms("b", "a") == 9.5
    assert data.rtt_ms("a", "c") is None
    with pytest.raises(KeyError, match="zz"):
        data.rtt_ms("a", "zz")


def test_landmark_rtts_leave_the_target_out(tmp_path: Path) -> None:
    data = load_dataset(write_set(tmp_path))
    pairs = data.landmark_rtts("a")
    assert [(host.id, rtt) for host, rtt in pairs] == [("b", 9.5)]
    assert all(host.id != "a" for host, _ in pairs)


def test_landmark_pairs_lists_each_pair_once(tmp_path: Path) -> None:
    data = load_dataset(write_set(tmp_path))
    assert sorted(data.landmark_pairs()) == [("a", "b", 9.5), ("b", "c", 7.0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"landmarks": "a,1.0,2.0,FR,,s\na,1.0,2.0,FR,,s\n"}, r"landmarks.csv:3: duplicate"),
        ({"landmarks": "a,91.0,2.0,FR,,s\n"}, r"landmarks.csv:2: lat 91.0 out of range"),
        ({"landmarks": "a,1.0,-181,FR,,s\n"}, r"landmarks.csv:2: lon -181.0 out of range"),
        ({"landmarks": "a,north,2.0,FR,,s\n"}, r"landmarks.csv:2: lat is not a number"),
        ({"landmarks": "a,nan,2.0,FR,,s\n"}, r"landmarks.csv:2: lat is not a finite"),
        ({"landmarks": "a,1.0,2.0,France,,s\n"}, r"landmarks.csv:2: country_iso2"),
        ({"targets": "a,1.5,2.0,FR,,s\n"}, r"targets.csv: host 'a' differs"),
        ({"rtts": "a,zz,1.0,,x\n"}, r"rtts.csv:2: dst_id 'zz' is in neither"),
        ({"rtts": "a,b,1.0,,x\nq,b,1.0,,x\n"}, r"rtts.csv:3: src_id 'q'"),
        ({"rtts": "a,b,-1.0,,x\n"}, r"rtts.csv:2: min_rtt_ms must be positive"),
        ({"rtts": "a,b,,,x\n"}, r"rtts.csv:2: min_rtt_ms is not a number"),
        ({"rtts": "a,a,1.0,,x\n"}, r"rtts.csv:2: a host paired with itself"),
        ({"rtts": "a,b,1.0,2.5,x\n"}, r"rtts.csv:2: n_samples"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    write_set(tmp_path, **kwargs)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path)


def test_missing_file_and_column_are_named(tmp_path: Path) -> None:
    write_set(tmp_path)
    (tmp_path / "rtts.csv").unlink()
    with pytest.raises(DatasetError, match=r"rtts.csv: file missing"):
        load_dataset(tmp_path)
    (tmp_path / "rtts.csv").write_text("src_id,dst_id,n_samples\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"rtts.csv:1: missing column\(s\) min_rtt_ms"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset(tmp_path / "nowhere")


def test_a_copy_of_the_shipped_data_loads_from_any_directory(tmp_path: Path) -> None:
    for name in ("landmarks.csv", "targets.csv", "rtts.csv"):
        shutil.copy(default_data_dir() / name, tmp_path / name)
    data = load_dataset(tmp_path)
    assert data.rtt_ms("wn-6", "wn-244") == load_dataset().rtt_ms("wn-6", "wn-244")
