"""A small slice of the shipped rtt-public data, for fast tests of the evaluation paths."""

from __future__ import annotations

import csv
from pathlib import Path

from lightfence.rttdata import LANDMARKS_FILE, RTTS_FILE, TARGETS_FILE, default_data_dir


def write_slice(out: Path, targets: int = 24, extra_landmarks: int = 30) -> Path:
    """The first `targets` WonderNetwork targets (each also a landmark) and `extra_landmarks`
    more landmarks, with every RTT row among them. Returns `out`."""
    src = default_data_dir()

    def rows(name: str) -> tuple[list[str], list[dict[str, str]]]:
        with (src / name).open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), list(reader)

    t_head, t_rows = rows(TARGETS_FILE)
    l_head, l_rows = rows(LANDMARKS_FILE)
    r_head, r_rows = rows(RTTS_FILE)
    landmark_ids = {r["id"] for r in l_rows}
    chosen = [r for r in t_rows if r["id"].startswith("wn-") and r["id"] in landmark_ids]
    chosen = chosen[:targets]
    keep = {r["id"] for r in chosen}
    others = [r for r in l_rows if r["id"] not in keep][:extra_landmarks]
    keep |= {r["id"] for r in others}
    out.mkdir(parents=True, exist_ok=True)

    def write(name: str, head: list[str], body: list[dict[str, str]]) -> None:
        with (out / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=head)
            writer.writeheader()
            writer.writerows(body)

    write(TARGETS_FILE, t_head, chosen)
    write(LANDMARKS_FILE, l_head, [r for r in l_rows if r["id"] in keep])
    write(RTTS_FILE, r_head, [r for r in r_rows if r["src_id"] in keep and r["dst_id"] in keep])
    return out
