"""What the dashboard reads, shaped for the eye: one status and one plain sentence per device,
verdict history as changes (runs) instead of one row per recompute, alerts grouped by (device,
kind), fleet verdict counts over time, and each device's RTTs against the speed-of-light floor.

Read-only, and display only: nothing here feeds a verdict. The sentences say what would change
an UNVERIFIED verdict in round numbers ("needs a landmark within ~N km of X"), a reading aid
worked out from the closest landmark and the distance to the forbidden region, never a promise.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lightfence.core.policy import PolicyError, parse_policy
from lightfence.geo.conformal import model_vectors
from lightfence.geo.regions import Complement, Region
from lightfence.geo.sphere import geodesic_km
from lightfence.model.policy import PolicySpec, RegionKind, parse_policy_spec
from lightfence.units import C_VACUUM_KM_PER_MS, EARTH_MEAN_RADIUS_KM, max_distance_km
from lightfence.verifier.alerts import alert_dict
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.clock import iso
from lightfence.verifier.models import AlertRow, DeviceRow, RejectionRow, VerdictRow

ADVICE_SHARE = 3.0
"""A new landmark d km from the device typically bounds it to about 2 d (real paths run about
twice the straight line at 2/3 c, docs/coverage.md); to exclude a forbidden region D km away
its cap must stop short of it, d + 2 d < D: hence about D / 3."""
SLOW_EVERYWHERE = 3.0
"""The closest landmark's reach this many times the distance to the forbidden region: the
device is not near any landmark as far as its RTTs tell, and one more landmark may not help."""
RUN_SCAN = 5000
"""Newest verdict rows read to build a device's history of changes."""
FLEET_SCAN = 20000
"""Newest verdict rows read for the fleet's verdict counts over time."""
NO_CHECKIN = "NO CHECK-IN"
REJECTED = "REJECTED"
PENDING = "PENDING"
_REJECTED_KINDS = ("identity_change", "rejected_evidence")
_REJECTION_WORDS = {
    "identity_change": "answered with a key that is not the enrolled one (a cloned or "
    "replaced key)",
    "bad_signature": "sent records whose signatures do not check",
    "stale": "sent records too old to count",
}


def name_of(device: DeviceRow) -> str:
    host = device.attributes.get("host") if isinstance(device.attributes, dict) else None
    return str(host) if host else device.id[:12]


def ago(ns: int | None, now_ns: int) -> str:
    """'4 min ago' style text; 'never' for None."""
    if ns is None:
        return "never"
    s = max(0, (now_ns - ns) // 1_000_000_000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def _round_km(km: float) -> int:
    """Two significant figures: the advice is an order of magnitude, not a survey."""
    if km <= 0:
        return 0
    digits = max(0, math.floor(math.log10(km)) - 1)
    return int(round(km / 10**digits) * 10**digits)


@lru_cache(maxsize=256)
def _forbidden(policy: str, bound: str, claimed: str | None) -> tuple[Region, str] | None:
    """The region a VERIFIED verdict must exclude, and its name, for a device's policy."""
    try:
        allowed = parse_policy(policy, bound).allowed_for(claimed)
    except (PolicyError, ValueError):
        return None
    forbidden = allowed.complement()
    if isinstance(allowed, Complement):
        return forbidden, forbidden.name
    if allowed.name.startswith("within "):  # a licensed site's disc
        return forbidden, "beyond " + allowed.name.removeprefix("within ")
    return forbidden, f"outside {allowed.name}"


def _closest(measurements: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    usable = [m for m in measurements if "lat" in m and "lon" in m and m.get("rtt_ms")]
    return min(usable, key=lambda m: float(m["rtt_ms"])) if usable else None


def unverified_sentence(row: VerdictRow, measurements: Sequence[dict[str, Any]]) -> str:
    found = _forbidden(row.policy, row.bound or "vacuum", row.claimed)
    near = _closest(measurements)
    if found is None or near is None:
        return "Not verified: closer landmarks or faster paths are needed to decide."
    region, name = found
    vec = model_vectors(np.array([near["lat"]]), np.array([near["lon"]])).reshape(1, 3)
    inside = bool(region.contains(np.array([near["lat"]]), np.array([near["lon"]]))[0])
    reach_km = max_distance_km(float(near["rtt_ms"]))
    lid = near["landmark_id"]
    if inside:
        return (
            f"Could be {_in(name)}: its closest landmark, {lid}, is itself there; a landmark "
            "close to the device and away from that region is needed."
        )
    gap_km = float(region.boundary.distance_lower_bound_rad(vec)[0]) * EARTH_MEAN_RADIUS_KM
    need = _round_km(gap_km / ADVICE_SHARE)
    f = row.tolerated_liars or 0
    who = "a landmark" if f == 0 else f"{f + 1} independently run landmarks"
    text = (
        f"Could also be {_in(name)}: the closest landmark, {lid}, only places it within "
        f"{reach_km:,.0f} km; needs {who} within ~{need:,} km of {lid} "
        f"(that region is ~{_round_km(gap_km):,} km away)"
    )
    if reach_km > SLOW_EVERYWHERE * gap_km:
        text += "; its RTTs are slow to every landmark: it may be far from all of them, or relayed"
    return text + "."


def _in(name: str) -> str:
    return name if name.startswith(("outside ", "within ", "beyond ")) else f"in {name}"


def verdict_sentence(row: VerdictRow) -> str:
    """One plain sentence for a stored verdict: why, and for UNVERIFIED what would verify it."""
    measurements = row.gpu_inputs if row.locates == "gpu" and row.gpu_inputs else row.inputs
    kind = row.kind
    reason = (row.reason or "").split(" (tolerating")[0]
    if kind == "VERIFIED":
        return f"Verified: {reason}." if reason else "Verified."
    if kind == "UNVERIFIED":
        return unverified_sentence(row, list(measurements or ()))
    if kind == "INCONSISTENT" and row.alert == "key-gpu-mismatch":
        return (
            "The key and the GPU answered from different places: "
            + reason.split(": ", 1)[-1].rstrip(".")
            + "."
        )
    if kind == "INCONSISTENT":
        named = ", ".join(row.implicated or ()) or "some landmarks"
        return (
            f"The landmarks disagree ({named} cannot be reconciled): one lied or is mis-surveyed."
        )
    if kind == "REFUTED":
        return f"Refuted: {reason}."
    return reason or kind


def rejected_sentence(rejection: RejectionRow | None, n: int) -> str:
    """`rejection`: the device's latest rejection; `n`: its rejected records in all."""
    if rejection is None:
        return "Every record was rejected."
    words = _REJECTION_WORDS.get(rejection.reason, f"had its records rejected ({rejection.reason})")
    return f"Rejected: the device {words}; {n} record{'s' if n != 1 else ''} refused, no verdict."


def silent_sentence(device: DeviceRow, now_ns: int) -> str:
    every = f"the licence requires one every {device.checkin_interval_s:,} s"
    if device.last_record_ns is None:
        return f"No check-in since it was enrolled {ago(device.enrolled_ns, now_ns)}; {every}."
    return f"No check-in: last seen {ago(device.last_record_ns, now_ns)}; {every}."


def _visible(stmt: Any, who: Principal, column: Any) -> Any:
    if who.role is Role.OPERATOR:
        return stmt.where(column.in_(select(DeviceRow.id).where(DeviceRow.operator == who.owner)))
    return stmt


_DECLARED_KINDS = (RegionKind.IN_DECLARED, RegionKind.IN_DECLARED_SEA)


def policy_in_use(
    session: Session, who: Principal, policy: str, bound: str, claimed: str | None
) -> tuple[PolicySpec, str | None] | None:
    """The parsed policy and the declared country that matters to its region (None but for
    in-declared-country), if a device this token sees is licensed under it; else None.

    The map draws only the fleet's own policies: building a region from arbitrary text costs
    seconds to minutes of CPU (`in+sea:` of a dozen countries) and fills the geometry caches of
    core.policy, which keep every country set they ever built. Raises PolicyError for a text
    that does not parse (parsing alone builds no geometry)."""
    spec = parse_policy_spec(policy, bound)
    wanted = (claimed or "").strip().upper() or None if spec.kind in _DECLARED_KINDS else None
    stmt = select(DeviceRow.policy, DeviceRow.bound, DeviceRow.declared_country).distinct()
    if who.role is Role.OPERATOR:
        stmt = stmt.where(DeviceRow.operator == who.owner)
    for text, dev_bound, declared in session.execute(stmt):
        try:
            theirs = parse_policy_spec(text, dev_bound or "vacuum")
        except PolicyError:
            continue
        if theirs != spec:
            continue
        if wanted is None or (declared or "").strip().upper() == wanted:
            return spec, wanted
    return None


def _of_devices(who: Principal, column: Any) -> Any:
    """`column` names an enrolled device this token sees."""
    ids = select(DeviceRow.id)
    if who.role is Role.OPERATOR:
        ids = ids.where(DeviceRow.operator == who.owner)
    return column.in_(ids)


def device_rows(session: Session, who: Principal, now_ns: int) -> list[dict[str, Any]]:
    """One row per visible device: status, what it locates, the sentence, last check-in."""
    latest_ids = (
        select(VerdictRow.device_id, func.max(VerdictRow.id).label("vid"))
        .group_by(VerdictRow.device_id)
        .subquery()
    )
    stmt = (
        select(DeviceRow, VerdictRow)
        .outerjoin(latest_ids, latest_ids.c.device_id == DeviceRow.id)
        .outerjoin(VerdictRow, VerdictRow.id == latest_ids.c.vid)
        .order_by(DeviceRow.id)
    )
    if who.role is Role.OPERATOR:
        stmt = stmt.where(DeviceRow.operator == who.owner)
    pairs = [(d, v) for d, v in session.execute(stmt).all()]
    # The visible devices as a subquery, never as a list of their ids: one bound parameter per
    # device fails past 65,535 devices on PostgreSQL (its protocol's limit), at fleet scale.
    open_kinds: dict[str, set[str]] = {}
    for device_id, kind in session.execute(
        select(AlertRow.device_id, AlertRow.kind).where(
            _of_devices(who, AlertRow.device_id), AlertRow.acknowledged_ns.is_(None)
        )
    ):
        open_kinds.setdefault(str(device_id), set()).add(kind)
    rejections: dict[str, RejectionRow] = {}
    rejected: Counter[str] = Counter()
    for r in session.execute(
        select(RejectionRow)
        .where(_of_devices(who, RejectionRow.device_id))
        .order_by(RejectionRow.received_ns.desc())
    ).scalars():
        rejections.setdefault(str(r.device_id), r)
        rejected[str(r.device_id)] += r.count or 1
    return [
        _device_row(d, v, open_kinds.get(d.id, set()), rejections.get(d.id), rejected[d.id], now_ns)
        for d, v in pairs
    ]


def _device_row(
    d: DeviceRow,
    v: VerdictRow | None,
    kinds: set[str],
    rej: RejectionRow | None,
    n_rejected: int,
    now_ns: int,
) -> dict[str, Any]:
    if v is not None:
        status, sentence = v.kind, verdict_sentence(v)
    elif kinds & set(_REJECTED_KINDS) or rej is not None:
        status, sentence = REJECTED, rejected_sentence(rej, n_rejected)
    elif "missed_checkin" in kinds:
        status, sentence = NO_CHECKIN, silent_sentence(d, now_ns)
    else:
        status, sentence = PENDING, "No verdict yet: waiting for the first measurements."
    return {
        "device_id": d.id,
        "name": name_of(d),
        "operator": d.operator,
        "claim": d.declared_country,
        "policy": d.policy,
        "bound": d.bound,
        "status": status,
        "locates": None if v is None else (v.locates or "key"),
        "verdict_id": None if v is None else v.id,
        "sentence": sentence,
        "last_seen_at": iso(d.last_record_ns),
        "last_seen": ago(d.last_record_ns, now_ns),
        "open_alerts": sorted(kinds),
    }


def runs(rows: Iterable[VerdictRow]) -> list[dict[str, Any]]:
    """Collapse verdict rows (newest first) into runs of the same verdict and locates: the
    history shows changes, with how many recomputes each run spans. A run keeps its newest
    reason (the numbers in a reason move with every record; the verdict is what changes)."""
    out: list[dict[str, Any]] = []
    for r in rows:
        key = (r.kind, r.locates or "key")
        if out and out[-1]["_key"] == key:
            run = out[-1]
            run["count"] += 1
            run["since"] = iso(r.computed_ns)
            run["since_ns"] = r.computed_ns
            continue
        out.append(
            {
                "_key": key,
                "verdict": r.kind,
                "locates": r.locates or "key",
                "reason": r.reason,
                "sentence": verdict_sentence(r),
                "since": iso(r.computed_ns),
                "since_ns": r.computed_ns,
                "until": iso(r.computed_ns),
                "until_ns": r.computed_ns,
                "count": 1,
            }
        )
    for run in out:
        del run["_key"]
    return out


def verdict_runs(session: Session, device_id: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(VerdictRow)
        .where(VerdictRow.device_id == device_id)
        .order_by(VerdictRow.id.desc())
        .limit(RUN_SCAN)
    ).scalars()
    return runs(rows)


def rtt_rows(
    measurements: Sequence[dict[str, Any]], reference: tuple[float, float] | None
) -> list[dict[str, Any]]:
    """Each landmark's RTT beside the floor 2 d / c from the reference point (None: no floor)."""
    out = []
    for m in sorted(measurements, key=lambda m: float(m["rtt_ms"])):
        floor = dist = None
        if reference is not None and "lat" in m and "lon" in m:
            dist = geodesic_km(reference[0], reference[1], float(m["lat"]), float(m["lon"]))
            floor = 2.0 * dist / C_VACUUM_KM_PER_MS  # light in vacuum: RTT floor 2 d / c
        out.append(
            {
                "landmark_id": m["landmark_id"],
                "rtt_ms": float(m["rtt_ms"]),
                "floor_ms": None if floor is None else round(floor, 3),
                "distance_km": None if dist is None else round(dist, 1),
            }
        )
    return out


def alert_groups(session: Session, who: Principal, limit: int) -> list[dict[str, Any]]:
    """Alerts grouped by (device, kind) (landmark alerts by landmark), newest group first."""
    stmt = _visible(
        select(AlertRow).order_by(AlertRow.id.desc()).limit(limit), who, AlertRow.device_id
    )
    rows = list(session.execute(stmt).scalars())
    names = {
        d.id: name_of(d)
        for d in session.execute(
            select(DeviceRow).where(DeviceRow.id.in_({r.device_id for r in rows if r.device_id}))
        ).scalars()
    }
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:  # newest first: the first row of a group is its latest
        key = (r.device_id or f"landmark:{r.landmark_id}", r.kind)
        a = alert_dict(r)
        g = groups.get(key)
        if g is None:
            groups[key] = g = {
                "kind": r.kind,
                "device_id": r.device_id,
                "device_name": names.get(r.device_id or ""),
                "landmark_id": r.landmark_id if not r.device_id else None,
                "message": r.message,
                "count": 0,
                "open": 0,
                "landmarks": [],
                "first_at": a["created_at"],
                "last_at": a["last_seen_at"],
                "last_ns": r.last_ns or r.created_ns,
                "ids": [],
            }
        g["count"] += a["count"]
        g["open"] += a["acknowledged_at"] is None
        g["first_at"] = a["created_at"]
        g["ids"].append(r.id)
        if r.landmark_id and r.landmark_id not in g["landmarks"]:
            g["landmarks"].append(r.landmark_id)
    out = sorted(groups.values(), key=lambda g: -int(g["last_ns"]))
    for g in out:
        g.pop("last_ns")
    return out


def fleet_timeline(session: Session, who: Principal) -> list[dict[str, Any]]:
    """The fleet's verdict counts after each change of any device's verdict, oldest first."""
    stmt = _visible(
        select(VerdictRow.id, VerdictRow.device_id, VerdictRow.kind, VerdictRow.computed_ns)
        .order_by(VerdictRow.id.desc())
        .limit(FLEET_SCAN),
        who,
        VerdictRow.device_id,
    )
    rows = sorted(session.execute(stmt).all(), key=lambda r: r.id)
    current: dict[str, str] = {}
    points: list[dict[str, Any]] = []
    for r in rows:
        if current.get(r.device_id) == r.kind:
            continue
        current[r.device_id] = r.kind
        points.append(
            {
                "at": iso(r.computed_ns),
                "at_ns": r.computed_ns,
                "counts": dict(Counter(current.values())),
            }
        )
    return points
