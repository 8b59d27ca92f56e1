"""Verdicts for every target of a data set, honest and relayed, through the one batch engine.

Honest: target t is measured by every landmark that measured it, t itself left out.
Relayed: a device at restricted host r answers through t (the smuggling case). Each landmark
then sees RTT(L, t) + the fastest possible t <-> r round trip (vacuum, great circle): the
adversary's best case, so no relay in the real world could look closer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lightfence.core.batch import MeasurementTable, decide_batch
from lightfence.core.kinds import VerdictKind
from lightfence.core.policy import Policy
from lightfence.geo.sphere import geodesic_km
from lightfence.rttdata import Dataset, Host
from lightfence.units import C_VACUUM_KM_PER_MS

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Case:
    """One device to judge: where it truly is, what it claims, what the landmarks saw."""

    target: Host
    """The host whose network position the device appears at (the relay, when relayed)."""
    truth: Host
    """Where the device really is."""
    landmarks: tuple[Host, ...]
    rtts_ms: tuple[float, ...]


def honest_cases(data: Dataset) -> list[Case]:
    cases = []
    for tid in data.target_ids:
        pairs = data.landmark_rtts(tid)
        target = data.hosts[tid]
        cases.append(Case(target, target, tuple(h for h, _ in pairs), tuple(r for _, r in pairs)))
    return cases


def relay_cases(data: Dataset, restricted: Sequence[str]) -> list[Case]:
    """Every target outside the restricted countries, relayed to every data host inside them."""
    codes = {c.upper() for c in restricted}
    inside = [h for h in data.hosts.values() if h.country_iso2.upper() in codes]
    cases = []
    for tid in data.target_ids:
        relay = data.hosts[tid]
        if relay.country_iso2.upper() in codes:
            continue
        pairs = data.landmark_rtts(tid)
        for device in inside:
            leg_ms = (
                2.0
                * geodesic_km(relay.lat, relay.lon, device.lat, device.lon)
                / (C_VACUUM_KM_PER_MS)
            )
            kept = [(h, r + leg_ms) for h, r in pairs if h.id != device.id]
            cases.append(Case(relay, device, tuple(h for h, _ in kept), tuple(r for _, r in kept)))
    return cases


def judge(
    cases: Sequence[Case],
    policy: Policy,
    landmark_error_km: float,
    claim: Callable[[Case], str | None],
) -> list[VerdictKind]:
    """Verdicts for all cases in one batch call."""
    return judge_with_f(cases, policy, landmark_error_km, claim)[0]


def judge_with_f(
    cases: Sequence[Case],
    policy: Policy,
    landmark_error_km: float,
    claim: Callable[[Case], str | None],
) -> tuple[list[VerdictKind], list[int]]:
    """Verdicts for all cases in one batch call, and the f each one tolerated."""
    counts = np.array([len(c.landmarks) for c in cases], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    hosts = [h for c in cases for h in c.landmarks]
    n = len(hosts)
    table = MeasurementTable(
        device_start=start,
        lat_deg=np.array([h.lat for h in hosts], dtype=np.float64),
        lon_deg=np.array([h.lon for h in hosts], dtype=np.float64),
        rtt_ms=np.array([r for c in cases for r in c.rtts_ms], dtype=np.float64),
        floor_ms=np.zeros(n),
        position_error_km=np.full(n, landmark_error_km),
    )
    result = decide_batch(table, policy, [claim(c) for c in cases])
    kinds = [VerdictKind.from_code(int(k)) for k in result.kind]
    return kinds, [int(f) for f in result.tolerated_liars]


def measured_verified(
    data: Dataset,
    policy: Policy,
    landmark_ids: set[str] | None = None,
    landmark_error_km: float = 0.0,
) -> tuple[int, int, list[int]]:
    """(VERIFIED, targets, f per target) of the data's targets on their measured RTTs, each
    measured by the landmarks in `landmark_ids` (default: all), itself left out: the honest
    verdicts of `lightfence eval`, which coverage reports next to its model."""
    cases = honest_cases(data)
    if landmark_ids is not None:
        cases = [
            Case(
                c.target,
                c.truth,
                tuple(h for h in c.landmarks if h.id in landmark_ids),
                tuple(
                    r for h, r in zip(c.landmarks, c.rtts_ms, strict=True) if h.id in landmark_ids
                ),
            )
            for c in cases
        ]
    if not cases:
        return 0, 0, []
    kinds, tolerated = judge_with_f(
        cases, policy, landmark_error_km, lambda c: c.target.country_iso2
    )
    return sum(k is VerdictKind.VERIFIED for k in kinds), len(cases), tolerated


def truly_allowed(case: Case, policy: Policy) -> bool:
    """Is the device's true position inside the allowed region (by the region's own data)?"""
    region = policy.allowed_for(case.truth.country_iso2)
    return bool(region.contains(np.array([case.truth.lat]), np.array([case.truth.lon]))[0])
