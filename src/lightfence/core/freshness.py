"""Which signed records count, and how much: the time rules the verifier service and the
offline `lightfence verify` share, so a bundle is judged the same way by both.

* A record is refused when it was measured more than `max_age_s` before now, or is dated more
  than `max_skew_s` after now (the landmark's clock is wrong).
* A verdict combines a device's records measured within `window_s` before its newest record.
  Each older record's landmark position error grows by `speed_km_per_h` times its age relative
  to the newest (the device may have moved since), so caps only grow and the verdict stays
  sound for a device that moved during the window.
* Several records from one landmark are all sound caps; the tightest one is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lightfence.core.measurement import Landmark, Measurement
from lightfence.units import Bound, max_distance_km

MAX_RECORD_AGE_S = 24 * 3600.0
"""Records measured longer ago than this are refused as stale."""
MAX_CLOCK_SKEW_S = 120.0
"""Records dated further in the future than this (landmark clock ahead) are refused."""
VERDICT_WINDOW_S = 900.0
"""A verdict combines the records measured within this span before the newest one."""
MAX_DEVICE_SPEED_KM_PER_H = 1000.0
"""How fast a device could move between two records (an aircraft)."""
NS_PER_S = 10**9
NS_PER_H = 3600 * NS_PER_S


def age_problem(measured_ns: int, now_ns: int, max_age_s: float, max_skew_s: float) -> str | None:
    """Why a record measured at `measured_ns` does not count at `now_ns`, or None."""
    age_s = (now_ns - measured_ns) / 1e9
    if age_s > max_age_s:
        return f"measured {age_s:.0f} s ago; records older than {max_age_s:.0f} s are not accepted"
    if -age_s > max_skew_s:
        return f"dated {-age_s:.0f} s in the future: the landmark's clock is wrong"
    return None


@dataclass(frozen=True, slots=True)
class WindowRecord:
    """One accepted record as a candidate verdict input, with its landmark's surveyed place."""

    record_id: int
    landmark_id: str
    lat: float
    lon: float
    position_error_km: float
    min_rtt_ns: int
    measured_ns: int
    floor_ns: int | None = None
    """GPU-signed rounds only: the signing-time floor S_floor subtracted from the RTT (a signed
    calibration's lower bound, or 0); the input then carries `floor_ms`. None for key records."""


def _reach_km(item: dict[str, Any], bound: Bound) -> float:
    rtt_ms = item["rtt_ms"] - item.get("floor_ms", 0.0)
    return float(max_distance_km(rtt_ms, bound) + item["position_error_km"])


def verdict_inputs(
    records: Iterable[WindowRecord],
    newest_ns: int,
    bound: Bound,
    window_s: float,
    speed_km_per_h: float,
) -> list[dict[str, Any]]:
    """The verdict inputs from a device's records, its newest measured at `newest_ns`: those in
    the window, each grown by the movement allowance, the tightest per landmark, sorted by
    landmark and record id. Each is a dict: record_id, landmark_id, lat, lon, rtt_ms,
    position_error_km, measured_ns (and floor_ms for GPU-signed rounds, whose tightness is
    judged by RTT - S_floor)."""
    window_ns = int(window_s * 1e9)
    best: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec.measured_ns < newest_ns - window_ns:
            continue
        age_h = max(newest_ns - rec.measured_ns, 0) / NS_PER_H
        item = {
            "record_id": rec.record_id,
            "landmark_id": rec.landmark_id,
            "lat": rec.lat,
            "lon": rec.lon,
            "rtt_ms": rec.min_rtt_ns / 1e6,
            "position_error_km": rec.position_error_km + speed_km_per_h * age_h,
            "measured_ns": rec.measured_ns,
        }
        if rec.floor_ns is not None:
            item["floor_ms"] = rec.floor_ns / 1e6
        old = best.get(rec.landmark_id)
        if old is None or _reach_km(item, bound) < _reach_km(old, bound):
            best[rec.landmark_id] = item
    return sorted(best.values(), key=lambda i: (i["landmark_id"], i["record_id"]))


def measurement_of(item: Mapping[str, Any]) -> Measurement:
    """The core's measurement for one verdict input (as `verdict_inputs` makes it, or as the
    verifier stored it): its landmark, grown position error, RTT and S_floor (0 for key rounds)."""
    landmark = Landmark(item["landmark_id"], item["lat"], item["lon"], item["position_error_km"])
    return Measurement(landmark, item["rtt_ms"], item.get("floor_ms", 0.0))
