"""Physical constants and unit conversions. The one module that owns them.

Every other module imports from here, so a bound or a radius is never written twice.
"""

from __future__ import annotations

from enum import StrEnum

C_VACUUM_KM_PER_MS = 299.792458
"""Speed of light in vacuum: 299,792.458 km/s, exact by the definition of the metre."""

FIBRE_FRACTION_OF_C = 2.0 / 3.0
"""Signal speed in glass fibre as a fraction of c (refractive index about 1.5)."""

EARTH_MEAN_RADIUS_KM = 6371.0088
"""IUGG mean radius R1 of the WGS84 ellipsoid; the sphere all cap geometry lives on."""

HALF_CIRCUMFERENCE_KM = 3.141592653589793 * EARTH_MEAN_RADIUS_KM
"""No two points on the sphere are further apart than this; a larger cap is the whole Earth."""


class Bound(StrEnum):
    """The speed no signal may beat, which turns an RTT into a distance cap."""

    VACUUM = "vacuum"
    """Default: nothing beats light in vacuum (microwave, laser, hollow-core fibre)."""
    FIBRE = "fibre"
    """Opt-in, tighter: assumes every path is glass fibre. Recorded on every verdict."""

    @property
    def speed_km_per_ms(self) -> float:
        if self is Bound.VACUUM:
            return C_VACUUM_KM_PER_MS
        return C_VACUUM_KM_PER_MS * FIBRE_FRACTION_OF_C


def max_distance_km(rtt_ms: float, bound: Bound = Bound.VACUUM) -> float:
    """Largest one-way distance consistent with a round trip of `rtt_ms`: v * t / 2."""
    return bound.speed_km_per_ms * rtt_ms / 2.0
