"""The verdict engine, vectorised over a batch of devices. Every verdict goes through here.

The single-device `decide` and the fleet engines call `decide_batch`, so a verdict never depends
on where it was computed.

For each device: caps from its RTTs (radius v * (rtt - floor) / 2 plus each landmark's survey
error, turned into an angle on the model sphere by an exact ellipsoidal bound, geo.conformal);
F = their intersection. Then, for a region R,
`may_intersect(F, R)` is answered in two stages:

* fast path: one cap decides. A cap whose centre is outside R and whose radius (grown by R's
  data error) is below the centre's distance to R's boundary cannot meet R, so neither can F.
  A cap inside R by the same margin puts all of F inside R.
* precise path, for devices near a border: any boundary vertex of R inside every cap (grown by
  R's data error and half the vertex spacing), or any witness point of F inside R, means they may
  meet; otherwise they provably do not (see BoundaryIndex and candidate_points). It runs in three
  steps, cheapest first, each settling only what it can prove: a few probe vertices of R tested
  for all undecided devices at once (`_probe_stage`: a hit is a vertex the full border test
  would find), then the witnesses for all of them at once (`_witness_stage`), then the full
  border test per device for the few left.

A device that tolerates f > 0 lying landmarks (Policy.liars) is judged on F_f, the points inside
the caps of all but at most f of its landmarks (core.robust): its records are merged per
landmark, the fast path needs f + 1 deciding caps instead of one, and the precise path counts
depth instead of "inside every cap". Devices with f = 0 take exactly the plain path.

Each stage can only answer "may intersect" when unsure. VERIFIED needs "F may not meet the
forbidden region" to be False, so doubt always ends in UNVERIFIED, never in VERIFIED.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from lightfence.core.kinds import Reason, VerdictKind
from lightfence.core.policy import Policy, claimed_region
from lightfence.core.robust import (
    irreconcilable_rows,
    landmark_groups,
    liars_per_device,
    robust_nonempty,
    robust_precise_may_intersect,
    smallest_per_group,
)
from lightfence.geo.caps import (
    CAP_TOLERANCE_RAD,
    VERTEX_SLACK_RAD,
    WHOLE_SPHERE_RAD,
    WITNESS_TOLERANCE_RAD,
    drop_redundant,
    inside_all,
    quick_witnesses,
    tolerant,
    witnesses,
)
from lightfence.geo.conformal import G_MAX_RAD_PER_KM, model_lat_lon, model_vectors, reach_rad
from lightfence.geo.depth import any_point_near, farthest_rad, robust_witnesses
from lightfence.geo.regions import Complement, Disc, Region
from lightfence.geo.sphere import Float64Array
from lightfence.units import Bound

CHUNK_DEVICES = 4096
"""Devices handled per vectorised step: bounds memory at about 50 MB for 10 caps each."""


PROBE_CHUNK_DEVICES = 256
"""Devices per step of the probe stage: (devices x caps x probes) dots, about 20 MB."""

PROBE_MARGIN = 1e-12
"""The probe stage counts a vertex inside a cap only this far (in cosine) inside the limit the
per-device step uses, so rounding cannot make it find a vertex that step would miss."""


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
    tolerated_liars: NDArray[np.int64]
    """(m,) f per device: how many of its landmarks may have lied without changing the verdict."""

    def names(self) -> list[str]:
        return [VerdictKind.from_code(int(c)).value for c in self.kind]


def cap_radius_rad(table: MeasurementTable, bound: Bound) -> Float64Array:
    """Angular cap radius per row on the model sphere: the farthest the device can be from
    that landmark.

    The device is within v * (rtt - floor) / 2 km of the landmark's true position along the
    WGS84 ellipsoid, and that position within the landmark's survey error of its stated one, so
    within their sum of the stated position; `conformal.reach_rad` turns that into an angle that
    holds exactly (no flat ellipsoid margin). CAP_TOLERANCE_RAD covers rounding.
    """
    reach_km = bound.speed_km_per_ms * (table.rtt_ms - table.floor_ms) / 2.0
    angle = reach_rad(table.lat_deg, reach_km + table.position_error_km)
    return np.minimum(angle + CAP_TOLERANCE_RAD, WHOLE_SPHERE_RAD)


def margin_rad(region: Region) -> float:
    """A region's data error as an angle on the model sphere (an upper bound anywhere)."""
    return float(region.data_error_km) * G_MAX_RAD_PER_KM


def _more_per_device(
    flags: NDArray[np.bool_], start: NDArray[np.int64], liars: NDArray[np.int64] | None
) -> NDArray[np.bool_]:
    """Per device: more than liars[i] of its rows are flagged (more than 0 when liars is None)."""
    counts = np.add.reduceat(flags.astype(np.int64), start[:-1]) if len(flags) else None
    if counts is None:
        return np.zeros(len(start) - 1, dtype=bool)
    empty = np.diff(start) == 0
    more = counts > 0 if liars is None else counts > liars
    return np.asarray(more & ~empty)


class _Caps:
    """Row-level cap data plus per-device gathering into padded (g, k) blocks."""

    def __init__(self, table: MeasurementTable, bound: Bound) -> None:
        self.table = table
        self.start = np.asarray(table.device_start, dtype=np.int64)
        self.count = np.diff(self.start)
        self.vec = model_vectors(table.lat_deg, table.lon_deg).reshape(-1, 3)
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
            # Most devices show a witness among a few candidates; the rest get all of them.
            quick = quick_witnesses(centres, radius)
            out[chunk[quick]] = True
            rest = np.flatnonzero(~quick)
            if len(rest):
                ok, _, _ = witnesses(centres[rest], radius[rest])
                out[chunk[rest]] = ok
    return out


def precise_may_intersect(
    centres: Float64Array, radius: Float64Array, region: Region, *, witnesses_done: bool = False
) -> bool:
    """Whether the intersection F of the caps (k, 3), (k,) may come within the region's data
    error of `region` (F grown by the error, not each cap: for a thin F the difference is large).

    `witnesses_done`: step 1 already ran (the vectorised `_witness_stage`) and found F non-empty
    with no witness in the region; go straight to step 2.

    Callers know F is not empty. If the witnesses still find none, that can only be rounding,
    and the answer is "may meet": an empty answer is never read as "does not meet".
    """
    grow = margin_rad(region)
    c, r, kept = drop_redundant(centres[None], radius[None])
    c, r = c[0, : max(int(kept[0]), 1)], r[0, : max(int(kept[0]), 1)]
    # 1. A witness of F inside the region: cheap, and decides most devices that do meet it.
    if not witnesses_done:
        ok, cands, in_f = witnesses(c[None], r[None])
        if not bool(ok[0]):
            return True
        lat, lon = model_lat_lon(cands[0][in_f[0]])
        if bool(region.contains(lat, lon).any()):
            return True
    # 2. Otherwise F comes within the error of the region only if a border point does, and then
    #    a stored vertex lies within the error plus VERTEX_SLACK_RAD of F. Vertices inside every
    #    cap grown that much are the only ones that can; their distance to F is then exact.
    limit = grow + VERTEX_SLACK_RAD
    near = region.boundary.vertices_in_all(c, np.minimum(r + limit, WHOLE_SPHERE_RAD))
    return any_point_near(c, r, near, len(r), limit)


def _witness_stage(
    caps: _Caps, devices: NDArray[np.int64], region: Region, liars: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Vectorised first step of the precise path, for many devices at once.

    With F_f the points in all but liars[j] caps, returns (meets, empty): `meets` when a witness
    of F_f (or, for f = 0, the normalised mean of F's witnesses when that lies in F) is inside
    the region (then F_f meets it, let alone comes within its error); `empty` when no witness
    of F_f was found. The devices given are known to have a non-empty F, and F_f contains F,
    so `empty` can only come from rounding: the caller must read it as "may meet", never as
    "does not". The rest go on to the per-device border-vertex test.
    """
    meets = np.zeros(len(devices), dtype=bool)
    empty = np.zeros(len(devices), dtype=bool)
    counts = caps.count[devices]
    for k, f in {(int(a), int(b)) for a, b in zip(counts, liars, strict=True)}:
        if k == 0:
            continue
        idx = np.flatnonzero((counts == k) & (liars == f))
        for lo in range(0, len(idx), CHUNK_DEVICES):
            part = idx[lo : lo + CHUNK_DEVICES]
            centres, grown = caps.block(devices[part])
            if f == 0:
                c, r, _ = drop_redundant(centres, grown)
                ok, cands, use = witnesses(c, r)
                mean = np.einsum("gq,gqi->gi", use.astype(np.float64), cands)
                norm = np.linalg.norm(mean, axis=1, keepdims=True)
                mean = mean / np.where(norm > 1e-12, norm, 1.0)
                mean_in = inside_all(mean[:, None, :], c, tolerant(r))[:, 0] & (norm[:, 0] > 1e-12)
                cands = np.concatenate([cands, mean[:, None, :]], axis=1)
                use = np.concatenate([use, mean_in[:, None]], axis=1)
            else:
                need = np.full(len(part), k - f, dtype=np.int64)
                ok, cands, use = robust_witnesses(centres, grown, need)
            empty[part] = ~ok
            g_idx, q_idx = np.nonzero(use)
            if len(g_idx) == 0:
                continue
            lat, lon = model_lat_lon(cands[g_idx, q_idx])
            hit = np.zeros(len(part), dtype=bool)
            np.logical_or.at(hit, g_idx, region.contains(lat, lon))
            meets[part] = hit
    return meets, empty


def _probe_stage(
    caps: _Caps, devices: NDArray[np.int64], region: Region, liars: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Vectorised first try of the border-vertex step, for many devices at once.

    True where one of the region's probe vertices (a fixed subset of its stored boundary
    vertices, each on the border as the data draws it) lies in all but liars[j] of the device's
    caps, tested with PROBE_MARGIN to spare: then F_f holds a border point, so it meets the
    region's border and comes within any error of the region. False means "not settled", and
    the device goes on. It settles devices whose caps are wide enough to cover much of the
    region's border, where every deep candidate lies outside the region.
    """
    out = np.zeros(len(devices), dtype=bool)
    probes = region.boundary.probes
    if len(probes) == 0:
        return out
    counts = caps.count[devices]
    for k in np.unique(counts):
        if k == 0:
            continue
        idx = np.flatnonzero(counts == k)
        for lo in range(0, len(idx), PROBE_CHUNK_DEVICES):
            part = idx[lo : lo + PROBE_CHUNK_DEVICES]
            f = liars[part]
            centres, radius = caps.block(devices[part])
            r_vertex = radius
            cos_limit = np.where(r_vertex >= WHOLE_SPHERE_RAD, -np.inf, np.cos(r_vertex))
            # einsum, not matmul: a 3-long inner product gains nothing from BLAS, whose threads
            # would spin on the other cores that engines give to other workers.
            dots = np.einsum("gki,pi->gkp", centres, probes)
            missed = (dots < cos_limit[:, :, None] + PROBE_MARGIN).sum(axis=1)
            out[part] = (missed <= f[:, None]).any(axis=1)
    return out


def _leaves_disc(
    caps: _Caps, devices: NDArray[np.int64], disc: Disc, liars: NDArray[np.int64] | None
) -> NDArray[np.bool_]:
    """For a licensed disc, exactly: may F_f come within the site's error of the outside of the
    disc? That is, may a point of F_f lie further from the site than the disc's radius less the
    error? The farthest point is found exactly (geo.depth.farthest_rad), so a small disc is
    verifiable when its landmarks are close enough, which no border spacing would allow."""
    limit = disc.radius_rad - margin_rad(disc) - WITNESS_TOLERANCE_RAD - CAP_TOLERANCE_RAD
    out = np.ones(len(devices), dtype=bool)
    for j, d in enumerate(devices.tolist()):
        sl = slice(caps.start[d], caps.start[d + 1])
        k = int(caps.count[d])
        if k == 0:
            continue
        f = 0 if liars is None else int(liars[j])
        far = farthest_rad(caps.vec[sl], caps.radius[sl], disc.centre_vector, k - f)
        out[j] = far > limit
    return out


def may_intersect(
    caps: _Caps,
    devices: NDArray[np.int64],
    region: Region,
    liars: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """For each device: may F (F_f with f = liars[j]) meet the region (grown by its data error)?
    Doubt answers True. Rows of a device with f > 0 must be one per landmark (see decide_batch).

    Also returns which devices the fast path decided, for statistics and explanations.
    """
    if len(devices) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    if isinstance(region, Complement) and isinstance(region.inner, Disc):
        return _leaves_disc(caps, devices, region.inner, liars), np.zeros(len(devices), bool)
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
    margin = caps.radius[rows] + margin_rad(region)
    clear = dist > margin
    # F_f lies in all but f caps of any f + 1: f + 1 caps clear of R (or inside it) decide.
    f = None if liars is None or not liars.any() else liars
    disjoint = _more_per_device(~inside & clear, sub_start, f)
    contained = _more_per_device(inside & clear, sub_start, f)
    result = np.ones(len(devices), dtype=bool)
    result[disjoint] = False
    fast = disjoint | contained
    settled = fast.copy()
    if (~fast).any():
        js = np.flatnonzero(~fast)
        f_js = np.zeros(len(js), dtype=np.int64) if f is None else f[js]
        settled[js[_probe_stage(caps, devices[js], region, f_js)]] = True
    if (~settled).any():
        js = np.flatnonzero(~settled)
        f_js = np.zeros(len(js), dtype=np.int64) if f is None else f[js]
        meets, empty = _witness_stage(caps, devices[js], region, f_js)
        # F is known non-empty here: "no witness" is rounding, and doubt means "may meet".
        settled[js[meets | empty]] = True
    for j in np.flatnonzero(~settled):
        d = devices[j]
        sl = slice(caps.start[d], caps.start[d + 1])
        if caps.count[d] == 0:
            continue
        # Every device reaching here went through _witness_stage: step 1 is done.
        if f is None or f[j] == 0:
            result[j] = precise_may_intersect(
                caps.vec[sl], caps.radius[sl], region, witnesses_done=True
            )
        else:
            result[j] = robust_precise_may_intersect(
                caps.vec[sl], caps.radius[sl], region, int(f[j]), witnesses_done=True
            )
    return result, fast


def decide_batch(
    table: MeasurementTable,
    policy: Policy,
    claimed: Sequence[str | None] | None = None,
) -> BatchVerdicts:
    """Verdicts for every device of `table` under `policy`.

    `claimed[i]` is the country code device i declares (None: no claim, never REFUTED).
    Device i tolerates BatchVerdicts.tolerated_liars[i] lying landmarks (from policy.liars).
    """
    table.validate()
    m = table.devices
    if claimed is not None and len(claimed) != m:
        raise InvalidBatch(f"claimed has {len(claimed)} entries for {m} devices")
    table, liars = one_row_per_landmark(table, policy)
    robust = liars if liars.any() else None
    caps = _Caps(table, policy.bound)
    kind = np.full(m, VerdictKind.UNVERIFIED.code, dtype=np.int8)
    reason = np.full(m, Reason.MAY_LEAVE_ALLOWED, dtype=np.int8)
    none = caps.count == 0
    reason[none] = Reason.NO_MEASUREMENTS
    # F_f contains F, so a non-empty F is all that VERIFIED and REFUTED need of F_f.
    nonempty = _nonempty(caps)
    live = np.flatnonzero(nonempty)

    def f(devices: NDArray[np.int64]) -> NDArray[np.int64] | None:
        return None if robust is None else robust[devices]

    verified = np.zeros(m, dtype=bool)
    if policy.allowed is not None:
        leaves, _ = may_intersect(caps, live, policy.allowed.complement(), f(live))
        verified[live] = ~leaves
    elif claimed is not None:
        for code, devices in _group_by_claim(claimed, live).items():
            forbidden = policy.allowed_for(code).complement()
            leaves, _ = may_intersect(caps, devices, forbidden, f(devices))
            verified[devices] = ~leaves

    refuted = np.zeros(m, dtype=bool)
    if claimed is not None:
        for code, devices in _group_by_claim(claimed, live).items():
            meets, _ = may_intersect(caps, devices, claimed_region(code), f(devices))
            refuted[devices] = ~meets

    kind[verified] = VerdictKind.VERIFIED.code
    reason[verified] = Reason.INSIDE_ALLOWED
    kind[refuted] = VerdictKind.REFUTED.code
    reason[refuted] = Reason.OUTSIDE_CLAIM
    empty = ~nonempty & ~none
    kind[empty] = VerdictKind.INCONSISTENT.code
    reason[empty] = Reason.EMPTY_FEASIBLE
    for d in np.flatnonzero(empty & (liars > 0)):
        sl = slice(caps.start[d], caps.start[d + 1])
        if robust_nonempty(caps.vec[sl], caps.radius[sl], int(liars[d])):
            reason[d] = Reason.LANDMARKS_OUTVOTED
    return BatchVerdicts(kind=kind, reason=reason, tolerated_liars=liars)


def one_row_per_landmark(
    table: MeasurementTable, policy: Policy
) -> tuple[MeasurementTable, NDArray[np.int64]]:
    """The table to judge and f per device (m,).

    Devices with f > 0 keep one row per landmark position, the one of smallest cap: one liar
    controls all of its landmark's records, so f must count landmarks. Devices with f = 0 keep
    every row (their F is the same either way), and with policy.liars = 0 nothing is grouped.
    """
    m = table.devices
    if policy.liars == 0:
        return table, np.zeros(m, dtype=np.int64)
    start = np.asarray(table.device_start, dtype=np.int64)
    group, landmarks = landmark_groups(start, table.lat_deg, table.lon_deg)
    liars = liars_per_device(policy.liars, landmarks)
    if not liars.any():
        return table, liars
    row_liars = np.repeat(liars, np.diff(start))
    # Within a group (one landmark position) the cap angle grows with the distance in km, so the
    # smallest cap is the one of least km: no need to turn every row into an angle here.
    reach_km = policy.bound.speed_km_per_ms * (table.rtt_ms - table.floor_ms) / 2.0
    keep = smallest_per_group(group, reach_km + table.position_error_km) | (row_liars == 0)
    if keep.all():
        return table, liars
    dev = np.repeat(np.arange(m), np.diff(start))
    kept_start = np.concatenate([[0], np.cumsum(np.bincount(dev[keep], minlength=m))])
    merged = replace(
        table,
        device_start=kept_start.astype(np.int64),
        lat_deg=table.lat_deg[keep],
        lon_deg=table.lon_deg[keep],
        rtt_ms=table.rtt_ms[keep],
        floor_ms=table.floor_ms[keep],
        position_error_km=table.position_error_km[keep],
    )
    return merged, liars


def blamed_rows(table: MeasurementTable, policy: Policy, device: int) -> NDArray[np.int64]:
    """Rows of `table` (any device's) whose landmarks cannot be reconciled with the rest of
    `device`'s landmarks: the fewest whose removal leaves a common point. Empty if F is not empty.
    """
    lo, hi = int(table.device_start[device]), int(table.device_start[device + 1])
    sl = slice(lo, hi)
    one = replace(
        table,
        device_start=np.array([0, hi - lo], dtype=np.int64),
        lat_deg=table.lat_deg[sl],
        lon_deg=table.lon_deg[sl],
        rtt_ms=table.rtt_ms[sl],
        floor_ms=table.floor_ms[sl],
        position_error_km=table.position_error_km[sl],
    )
    group, _ = landmark_groups(one.device_start, one.lat_deg, one.lon_deg)
    centres = model_vectors(one.lat_deg, one.lon_deg).reshape(-1, 3)
    radius = cap_radius_rad(one, policy.bound)
    return lo + irreconcilable_rows(centres, radius, group)


def _group_by_claim(
    claimed: Sequence[str | None], devices: NDArray[np.int64]
) -> dict[str, NDArray[np.int64]]:
    groups: dict[str, list[int]] = {}
    for d in devices.tolist():
        code = claimed[d]
        if code:
            groups.setdefault(code.strip().upper(), []).append(d)
    return {code: np.asarray(ds, dtype=np.int64) for code, ds in groups.items()}
