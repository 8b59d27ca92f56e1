"""What a verdict is computed from: landmarks at surveyed positions and the RTTs they measured."""

from __future__ import annotations

import math
from dataclasses import dataclass


class InvalidMeasurement(ValueError):
    """A measurement that cannot be turned into a distance bound. Never becomes a verdict."""


@dataclass(frozen=True)
class Landmark:
    """A server at a surveyed position that times challenges."""

    id: str
    """Stable landmark identifier, as in the registry."""
    lat: float
    """WGS84 latitude in degrees."""
    lon: float
    """WGS84 longitude in degrees."""
    position_error_km: float = 0.0
    """How far the true position may lie from (lat, lon); added to every cap radius."""

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidMeasurement("landmark id must not be empty")
        if not (math.isfinite(self.lat) and -90.0 <= self.lat <= 90.0):
            raise InvalidMeasurement(f"landmark {self.id}: latitude {self.lat} not in [-90, 90]")
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 360.0):
            raise InvalidMeasurement(f"landmark {self.id}: longitude {self.lon} not in [-180, 360]")
        if not (math.isfinite(self.position_error_km) and self.position_error_km >= 0.0):
            raise InvalidMeasurement(
                f"landmark {self.id}: position error {self.position_error_km} km must be >= 0"
            )


@dataclass(frozen=True)
class Measurement:
    """The minimum RTT a landmark measured to the device, on the landmark's own clock."""

    landmark: Landmark
    rtt_ms: float
    """Minimum round-trip time in milliseconds. Must be positive and finite."""
    floor_ms: float = 0.0
    """Known processing time at the two ends, subtracted before the speed bound."""

    def __post_init__(self) -> None:
        lid = self.landmark.id
        if not math.isfinite(self.rtt_ms) or self.rtt_ms <= 0.0:
            raise InvalidMeasurement(f"landmark {lid}: RTT {self.rtt_ms} ms must be positive")
        if not math.isfinite(self.floor_ms) or self.floor_ms < 0.0:
            raise InvalidMeasurement(f"landmark {lid}: floor {self.floor_ms} ms must be >= 0")
        if self.floor_ms >= self.rtt_ms:
            raise InvalidMeasurement(
                f"landmark {lid}: RTT {self.rtt_ms} ms is not above its processing floor "
                f"{self.floor_ms} ms; the floor is wrong"
            )

    @property
    def propagation_ms(self) -> float:
        """The part of the RTT that a signal spent travelling."""
        return self.rtt_ms - self.floor_ms
