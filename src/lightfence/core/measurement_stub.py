"""Stand-in for `lightfence.core.measurement` until the lead's module lands on main.

Same names and fields as the planned module (Landmark(id, lat, lon, position_error_km=0.0),
Measurement(landmark, rtt_ms, floor_ms=0.0)); the estimate code only relies on those attributes
(see `lightfence.core.estimate.MeasurementLike`). On merge: delete this file and import from
`lightfence.core.measurement` instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Landmark:
    id: str
    lat: float
    lon: float
    position_error_km: float = 0.0
    """How far the surveyed position may be from the true one."""


@dataclass(frozen=True)
class Measurement:
    landmark: Landmark
    rtt_ms: float
    """Minimum round-trip time measured by the landmark."""
    floor_ms: float = 0.0
    """Known processing time, subtracted before the RTT becomes a distance."""
