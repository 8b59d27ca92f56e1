"""One device's verdict, with its reason in words and its feasible region for display."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightfence.core.batch import MeasurementTable, blamed_rows, cap_radius_rad, decide_batch
from lightfence.core.kinds import Reason, VerdictKind
from lightfence.core.measurement import InvalidMeasurement, Measurement
from lightfence.core.policy import Policy, PolicyError, claimed_region
from lightfence.geo.feasible import feasible_geojson
from lightfence.units import EARTH_MEAN_RADIUS_KM, Bound

__all__ = ["Verdict", "VerdictKind", "decide", "liars_phrase", "reason_text", "table_for"]


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reason: str
    """Why, in words a compliance officer can read."""
    reason_code: Reason
    policy: str
    """The policy text the verdict was computed under."""
    bound: Bound
    """The speed bound used: `vacuum` unless the policy opted into `fibre`."""
    claimed: str | None
    measurements: tuple[Measurement, ...] = field(repr=False)
    tolerated_liars: int = 0
    """How many landmarks may have lied without changing this verdict (f of F_f)."""
    implicated: tuple[str, ...] = ()
    """INCONSISTENT only: ids of the landmarks whose caps cannot be reconciled with the rest
    (every landmark of some smallest set whose removal leaves the others a common point)."""

    def cap_radii_km(self) -> list[float]:
        table = table_for(self.measurements)
        return [float(r) for r in cap_radius_rad(table, self.bound) * EARTH_MEAN_RADIUS_KM]

    def feasible_geojson(self) -> dict[str, Any]:
        """The feasible region as GeoJSON (display approximation; see geo.feasible)."""
        table = table_for(self.measurements)
        return feasible_geojson(
            table.lat_deg,
            table.lon_deg,
            cap_radius_rad(table, self.bound),
            ids=[m.landmark.id for m in self.measurements],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.kind.value,
            "reason": self.reason,
            "policy": self.policy,
            "bound": self.bound.value,
            "claimed": self.claimed,
            "tolerated_liars": self.tolerated_liars,
            "implicated_landmarks": list(self.implicated),
            "landmarks": [
                {"id": m.landmark.id, "rtt_ms": m.rtt_ms, "radius_km": round(r, 3)}
                for m, r in zip(self.measurements, self.cap_radii_km(), strict=True)
            ],
        }


def table_for(measurements: Sequence[Measurement]) -> MeasurementTable:
    n = len(measurements)
    return MeasurementTable(
        device_start=np.array([0, n], dtype=np.int64),
        lat_deg=np.array([m.landmark.lat for m in measurements], dtype=np.float64),
        lon_deg=np.array([m.landmark.lon for m in measurements], dtype=np.float64),
        rtt_ms=np.array([m.rtt_ms for m in measurements], dtype=np.float64),
        floor_ms=np.array([m.floor_ms for m in measurements], dtype=np.float64),
        position_error_km=np.array(
            [m.landmark.position_error_km for m in measurements], dtype=np.float64
        ),
    )


def decide(
    measurements: Sequence[Measurement], policy: Policy, claimed: str | None = None
) -> Verdict:
    """The verdict for one device. Raises InvalidMeasurement for input no verdict can come from."""
    measurements = tuple(measurements)
    if not measurements:
        raise InvalidMeasurement("no measurements: at least one landmark RTT is needed")
    if claimed is not None:
        claimed = claimed.strip().upper()
        claimed_region(claimed)  # unknown codes fail here, loudly
    if policy.in_declared_country and not claimed:
        raise InvalidMeasurement("policy in-declared-country needs the declared country")
    table = table_for(measurements)
    result = decide_batch(table, policy, [claimed])
    kind = VerdictKind.from_code(int(result.kind[0]))
    code = Reason(int(result.reason[0]))
    liars = int(result.tolerated_liars[0])
    implicated: tuple[str, ...] = ()
    if kind is VerdictKind.INCONSISTENT:
        ids = dict.fromkeys(measurements[i].landmark.id for i in blamed_rows(table, policy, 0))
        implicated = tuple(ids)
    text = reason_text(code, policy, claimed, liars, implicated)
    return Verdict(
        kind=kind,
        reason=text,
        reason_code=code,
        policy=policy.text,
        bound=policy.bound,
        claimed=claimed,
        measurements=measurements,
        tolerated_liars=liars,
        implicated=implicated,
    )


def reason_text(
    code: Reason,
    policy: Policy,
    claimed: str | None,
    tolerated_liars: int,
    implicated: Sequence[str] = (),
) -> str:
    """A verdict's reason in words: the one phrasing for `decide` and every engine that stores
    verdicts (the verifier service), so the same verdict always reads the same."""
    try:
        allowed = policy.allowed_for(claimed)
    except PolicyError:
        return f"{code.name.lower()}: the policy needs a declared country"
    forbidden = allowed.complement().name
    text = code.text(_phrase(allowed.name), _phrase(forbidden), claimed)
    if implicated:
        text += f"; cannot be reconciled with the rest: {', '.join(implicated)}"
    text += f" ({liars_phrase(tolerated_liars)})"
    if policy.bound is Bound.FIBRE:
        text += " (fibre bound: assumes no path faster than glass fibre)"
    return text


def liars_phrase(liars: int) -> str:
    """How the reason text states f; engines that build their own text append it too."""
    if liars == 0:
        return "tolerating no lying landmark"
    return f"tolerating {liars} lying landmark{'s' if liars > 1 else ''}"


def _phrase(region_name: str) -> str:
    """'outside CN' reads as it is; a bare country list needs 'in'."""
    if region_name.startswith(("outside ", "within ")):
        return region_name
    return f"in {region_name}"
