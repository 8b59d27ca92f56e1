"""The verdict engine, vectorised over a batch of devices. Every verdict goes through here.

The single-device `decide` and the fleet engines call `decide_batch`, so a verdict never depends
on where it was computed.

For each device: caps from its RTTs (radius v * (rtt - floor) / 2, grown for the ellipsoid and
for each landmark's survey error); F = their intersection. Then, for a region R,
`may_intersect(F, R)` is answered in two stages:

* fast path: one cap decides. A cap whose centre is outside R and whose radius (grown by R's
  data error) is below the centre's distance to R's boundary cannot meet R, so neither can F.
  A cap inside R by the same margin puts all of F inside R.
* precise path, for devices near a border: any boundary vertex of R inside every cap (grown by
  R's data error and half the vertex spacing), or any witness point of F inside R, means they may
  meet; otherwise they provably do not (see BoundaryIndex and candidate_points).

Each stage can only answer "may intersect" when unsure. VERIFIED needs "F may not meet the
forbidden region" to be False, so doubt always ends in UNVERIFIED, never in VERIFIED.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lightfence.core.kinds import Reason, VerdictKind
from lightfence.core.policy import Policy, claimed_region
from lightfence.geo.boundary import HALF_SPACING_KM
from lightfence.geo.caps import (
    CAP_TOLERANCE_RAD,
    WHOLE_SPHERE_RAD,
    drop_redundant,
    witnesses,
)
from lightfence.geo.regions import Region
from lightfence.geo.sphere import ELLIPSOID_EXCESS, Float64Array, lat_lon, unit_vectors
from lightfence.units import EARTH_MEAN_RADIUS_KM, Bound

CHUNK_DEVICES = 4096
"""Devices handled per vectorised step: bounds memory at about 50 MB for 10 caps each."""


class InvalidBatch(ValueError):
    """A measurement table with values no verdict can come from."""


@dataclass(frozen=True)
class MeasurementTable:
    """Measurements of many devices, rows grouped by device."""

    device_start: NDArray[np.int64]
    """(m + 1,) offsets: device i owns rows device_start[i] : device_start[i + 1]."""
    lat_deg: Float64Array
    """(n,) landmark latitude of each row."""
    lon_deg: Float64Array
    """(n,) landmark longitude of each row."""
    rtt_ms: Float64Array
    """(n,) minimum RTT of each row, ms."""
    floor_ms: Float64Array
    """(n,) known processing time subtracted before the speed bound, ms (zeros if none)."""
    position_error_km: Float64Array
    """(n,) landmark survey error added to the cap radius, km (zeros if surveyed)."""

    @property
    def devices(self) -> int:
        return len(self.device_start) - 1

    def validate(self) -> None:
        start = np.asarray(self.device_start)
        n = len(self.rtt_ms)
        if start.ndim != 1 or len(start) < 1 or start[0] != 0 or start[-1] != n:
            raise InvalidBatch("device_start must run from 0 to the number of rows")
        if np.any(np.diff(start) < 0):
            raise InvalidBatch("device_start must not decrease")
        for name in ("lat_deg", "lon_deg", "floor_ms", "position_error_km"):
            if len(getattr(self, name)) != n:
                raise InvalidBatch(f"{name} has {len(getattr(self, name))} rows, expected {n}")
        cols = (self.lat_deg, self.lon_deg, self.rtt_ms, self.floor_ms, self.position_error_km)
        if not all(np.all(np.isfinite(c)) for c in cols):
            raise InvalidBatch("measurements contain NaN or infinite values")
        if np.any(np.abs(self.lat_deg) > 90.0):
            raise InvalidBatch("landmark latitude out of [-90, 90]")
        if np.any(self.lon_deg < -180.0) or np.any(self.lon_deg > 360.0):
            raise InvalidBatch("landmark longitude out of [-180, 360]")
        if np.any(self.rtt_ms <= 0.0):
            raise InvalidBatch("RTTs must be positive")
        if np.any(self.floor_ms < 0.0) or np.any(self.floor_ms >= self.rtt_ms):
            raise InvalidBatch("floors must be >= 0 and below the RTT")
        if np.any(self.position_error_km < 0.0):
            raise InvalidBatch("landmark position errors must be >= 0")


@dataclass(frozen=True)
class BatchVerdicts:
    kind: NDArray[np.int8]
    """(m,) VerdictKind codes (VerdictKind.from_code)."""
    reason: NDArray[np.int8]
    """(m,) Reason codes."""

    def names(self) -> list[str]:
        return [VerdictKind.from_code(int(c)).value for c in self.kind]


def cap_radius_rad(table: MeasurementTable, bound: Bound) -> Float64Array:
    """Angular cap radius per row: the farthest the device can be from that landmark.

    Grown by ELLIPSOID_EXCESS (the sphere understates WGS84 distances by at most that much), by
    the landmark's survey error, and by CAP_TOLERANCE_RAD against rounding.
    """
    reach_km = bound.speed_km_per_ms * (table.rtt_ms - table.floor_ms) / 2.0
    radius_km = reach_km * (1.0 + ELLIPSOID_EXCESS) + table.position_error_km
    return np.minimum(radius_km / EARTH_MEAN_RADIUS_KM + CAP_TOLERANCE_RAD, WHOLE_SPHERE_RAD)


def _any_per_device(flags: NDArray[np.bool_], start: NDArray[np.int64]) -> NDArray[np.bool_]:
    counts = np.add.reduceat(flags.astype(np.int64), start[:-1]) if len(flags) else None
    if counts is None:
        return np.zeros(len(start) - 1, dtype=bool)
    empty = np.diff(start) == 0
    return np.asarray((counts > 0) & ~empty)


class _Caps:
    """Row-level cap data plus per-device gathering into padded (g, k) blocks."""

    def __init__(self, table: MeasurementTable, bound: Bound) -> None:
        self.table = table
        self.start = np.asarray(table.device_start, dtype=np.int64)
        self.count = np.diff(self.start)
        self.vec = unit_vectors(table.lat_deg, table.lon_deg).reshape(-1, 3)
        self.radius = cap_radius_rad(table, bound)

    def block(self, devices: NDArray[np.int64]) -> tuple[Float64Array, Float64Array]:
        """Padded caps (g, k, 3), (g, k) of the given devices, k = their largest cap count."""
        counts = self.count[devices]
        k = max(int(counts.max()), 1) if len(devices) else 1
        offs = np.arange(k)[None, :]
        rows = self.start[devices][:, None] + np.minimum(offs, np.maximum(counts[:, None] - 1, 0))
        pad = offs >= counts[:, None]
        centres = self.vec[rows]
        radius = np.where(pad, WHOLE_SPHERE_RAD, self.radius[rows])
        return centres, radius


def _nonempty(caps: _Caps) -> NDArray[np.bool_]:
    m = len(caps.count)
    out = np.zeros(m, dtype=bool)
    has_rows = np.flatnonzero(caps.count > 0)
    # Bucket by cap count so that padding stays small.
    for k in np.unique(caps.count[has_rows]):
        devices = has_rows[caps.count[has_rows] == k]
        for lo in range(0, len(devices), CHUNK_DEVICES):
            chunk = devices[lo : lo + CHUNK_DEVICES]
            centres, radius = caps.block(chunk)
            centres, radius, _ = drop_redundant(centres, radius)
            ok, _, _ = witnesses(centres, radius)
            out[chunk] = ok
    return out


def precise_may_intersect(centres: Float64Array, radius: Float64Array, region: Region) -> bool:
    """Whether the intersection of the caps (k, 3), (k,) may meet `region` grown by its error."""
    grow = region.data_error_km / EARTH_MEAN_RADIUS_KM
    half = HALF_SPACING_KM / EARTH_MEAN_RADIUS_KM
    c, r, kept = drop_redundant(centres[None], np.minimum(radius + grow, WHOLE_SPHERE_RAD)[None])
    c, r = c[0, : max(int(kept[0]), 1)], r[0, : max(int(kept[0]), 1)]
    # 1. A witness of F inside the region: cheap, and decides most devices that do meet it.
    ok, cands, in_f = witnesses(c[None], r[None])
    if not bool(ok[0]):
        return False
    lat, lon = lat_lon(cands[0][in_f[0]])
    if bool(region.contains(lat, lon).any()):
        return True
    # 2. Otherwise F meets the region only if the boundary crosses F: then a boundary vertex lies
    #    inside every cap grown by half the vertex spacing.
    r_vertex = np.minimum(r + half + CAP_TOLERANCE_RAD, WHOLE_SPHERE_RAD)
    return len(region.boundary.vertices_in_all(c, r_vertex)) > 0


def may_intersect(
    caps: _Caps, devices: NDArray[np.int64], region: Region
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """For each device: may F meet the region (grown by its data error)? Doubt answers True.

    Also returns which devices the fast path decided, for statistics and explanations.
    """
    if len(devices) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    counts = caps.count[devices]
    sub_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rows = np.repeat(caps.start[devices] - sub_start[:-1], counts) + np.arange(sub_start[-1])
    lat = caps.table.lat_deg[rows]
    lon = caps.table.lon_deg[rows]
    keys = lat + 1j * lon
    uniq, inverse = np.unique(keys, return_inverse=True)
    inside_u, dist_u = region.classify(uniq.real.copy(), uniq.imag.copy())
    inside = inside_u[inverse]
    dist = dist_u[inverse]
    margin = caps.radius[rows] + region.data_error_km / EARTH_MEAN_RADIUS_KM
    clear = dist > margin
    disjoint = _any_per_device(~inside & clear, sub_start)
    contained = _any_per_device(inside & clear, sub_start)
    result = np.ones(len(devices), dtype=bool)
    result[disjoint] = False
    fast = disjoint | contained
    for j in np.flatnonzero(~fast):
        d = devices[j]
        sl = slice(caps.start[d], caps.start[d + 1])
        if caps.count[d] == 0:
            continue
        result[j] = precise_may_intersect(caps.vec[sl], caps.radius[sl], region)
    return result, fast


def decide_batch(
    table: MeasurementTable,
    policy: Policy,
    claimed: Sequence[str | None] | None = None,
) -> BatchVerdicts:
    """Verdicts for every device of `table` under `policy`.

    `claimed[i]` is the country code device i declares (None: no claim, never REFUTED).
    """
    table.validate()
    m = table.devices
    if claimed is not None and len(claimed) != m:
        raise InvalidBatch(f"claimed has {len(claimed)} entries for {m} devices")
    caps = _Caps(table, policy.bound)
    kind = np.full(m, VerdictKind.UNVERIFIED.code, dtype=np.int8)
    reason = np.full(m, Reason.MAY_LEAVE_ALLOWED, dtype=np.int8)
    none = caps.count == 0
    reason[none] = Reason.NO_MEASUREMENTS
    nonempty = _nonempty(caps)
    live = np.flatnonzero(nonempty)

    verified = np.zeros(m, dtype=bool)
    if policy.allowed is not None:
        leaves, _ = may_intersect(caps, live, policy.allowed.complement())
        verified[live] = ~leaves
    elif claimed is not None:
        for code, devices in _group_by_claim(claimed, live).items():
            leaves, _ = may_intersect(caps, devices, policy.allowed_for(code).complement())
            verified[devices] = ~leaves

    refuted = np.zeros(m, dtype=bool)
    if claimed is not None:
        for code, devices in _group_by_claim(claimed, live).items():
            meets, _ = may_intersect(caps, devices, claimed_region(code))
            refuted[devices] = ~meets

    kind[verified] = VerdictKind.VERIFIED.code
    reason[verified] = Reason.INSIDE_ALLOWED
    kind[refuted] = VerdictKind.REFUTED.code
    reason[refuted] = Reason.OUTSIDE_CLAIM
    empty = ~nonempty & ~none
    kind[empty] = VerdictKind.INCONSISTENT.code
    reason[empty] = Reason.EMPTY_FEASIBLE
    return BatchVerdicts(kind=kind, reason=reason)


def _group_by_claim(
    claimed: Sequence[str | None], devices: NDArray[np.int64]
) -> dict[str, NDArray[np.int64]]:
    groups: dict[str, list[int]] = {}
    for d in devices.tolist():
        code = claimed[d]
        if code:
            groups.setdefault(code.strip().upper(), []).append(d)
    return {code: np.asarray(ds, dtype=np.int64) for code, ds in groups.items()}
