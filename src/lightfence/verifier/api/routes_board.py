"""The dashboard's read views (verifier/board.py): devices with a plain sentence each, verdict
changes, grouped alerts, fleet verdict counts over time, RTTs against the light floor, and the
policy's region for the map. Same visibility rules as every other read: an operator token sees
its own devices only."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import shapely
from fastapi import APIRouter, Query
from fastapi.responses import Response
from shapely.geometry import mapping

from lightfence.core.policy import PolicyError, parse_policy
from lightfence.geo.feasible import cap_polygon
from lightfence.geo.regions import Complement, Disc, Region
from lightfence.verifier import board, queries, registry
from lightfence.verifier.api.deps import FleetReaderDep, ServiceDep
from lightfence.verifier.api.responses import (
    ERRORS,
    BoardAlertOut,
    BoardDeviceDetailOut,
    BoardDeviceOut,
    BoardFleetOut,
)
from lightfence.verifier.clock import now_ns
from lightfence.verifier.errors import BadInput, NotFound
from lightfence.verifier.verdicts import verdict_of

router = APIRouter(prefix="/board", tags=["dashboard"], responses=ERRORS)

REGION_CACHE = 32
"""Policies whose outline is kept: bounded (a policy text has endless spellings, and only
enrolled devices' policies are built at all)."""
SIMPLIFY_DEG = 0.05
"""Display tolerance of a policy region's outline (about 5 km)."""


@router.get(
    "/devices",
    summary="Devices: status, one plain sentence, last check-in",
    response_model=list[BoardDeviceOut],
)
def devices(service: ServiceDep, who: FleetReaderDep) -> list[dict[str, Any]]:
    with service.read() as session:
        return board.device_rows(session, who, now_ns())


@router.get(
    "/devices/{device_id}",
    summary="One device: verdict changes, RTTs against the light floor, feasible region",
    response_model=BoardDeviceDetailOut,
)
def device(device_id: str, service: ServiceDep, who: FleetReaderDep) -> dict[str, Any]:
    with service.read() as session:
        row = registry.get_device(session, device_id, who)
        latest = queries.latest_verdict(session, device_id)
        history = board.verdict_runs(session, device_id)
        verdict = None if latest is None else verdict_of(latest)
    region = None if verdict is None else verdict.feasible_geojson()
    reference: dict[str, Any] | None = None
    if row.site_lat is not None and row.site_lon is not None:
        reference = {"lat": row.site_lat, "lon": row.site_lon, "what": "the licensed site"}
    elif region is not None and region["properties"]["estimate"] is not None:
        est = region["properties"]["estimate"]
        reference = {"lat": est["lat"], "lon": est["lon"], "what": "the region's centre"}
    at = None if reference is None else (float(reference["lat"]), float(reference["lon"]))
    rtt: dict[str, list[dict[str, Any]]] = {}
    if latest is not None:
        rtt["key"] = board.rtt_rows(latest.inputs or [], at)
        if latest.gpu_inputs:
            rtt["gpu"] = board.rtt_rows(latest.gpu_inputs, at)
    return {
        "device_id": device_id,
        "runs": history,
        "reference": reference,
        "rtt": rtt,
        "region": region,
    }


@router.get(
    "/alerts", summary="Alerts grouped by (device, kind)", response_model=list[BoardAlertOut]
)
def alert_groups(
    service: ServiceDep,
    who: FleetReaderDep,
    limit: int = Query(queries.MAX_PAGE, ge=1, le=10 * queries.MAX_PAGE),
) -> list[dict[str, Any]]:
    with service.read() as session:
        return board.alert_groups(session, who, limit)


@router.get("/fleet", summary="Verdict counts over time", response_model=BoardFleetOut)
def fleet(service: ServiceDep, who: FleetReaderDep) -> dict[str, Any]:
    with service.read() as session:
        return {"timeline": board.fleet_timeline(session, who)}


@router.get(
    "/policy-region",
    summary="A policy's forbidden (or allowed) region as GeoJSON, for the map",
    responses={200: {"content": {"application/geo+json": {}}, "description": "a Feature"}},
)
def policy_region(
    service: ServiceDep,
    who: FleetReaderDep,
    policy: str = Query(max_length=500),
    bound: str = Query("vacuum", max_length=16),
    claimed: str | None = Query(None, max_length=8),
) -> Response:
    """Only a policy some device visible to the token is licensed under (board.policy_in_use):
    geography is public, but building it from any text a token sends is a CPU and memory sink.
    Another operator's policy and a policy nobody uses answer alike."""
    policy = policy.strip()
    try:
        with service.read() as session:
            found = board.policy_in_use(session, who, policy, bound, claimed)
        if found is None:
            raise NotFound(f"no device visible to this token is licensed under {policy!r}")
        body = _region_feature(policy, bound, found[1])
    except (PolicyError, ValueError) as exc:
        raise BadInput(str(exc)) from exc
    return Response(body, media_type="application/geo+json")


@lru_cache(maxsize=REGION_CACHE)
def _region_feature(policy: str, bound: str, claimed: str | None) -> bytes:
    import json

    allowed = parse_policy(policy, bound).allowed_for(claimed)
    shows, region = (
        ("forbidden", allowed.complement())
        if isinstance(allowed, Complement)
        else ("allowed", allowed)
    )
    geom = _geometry(region)
    geometry = None
    if geom is not None and not geom.is_empty:
        geometry = mapping(shapely.set_precision(geom.simplify(SIMPLIFY_DEG), 1e-3))
    doc = {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"shows": shows, "name": region.name, "policy": policy},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _geometry(region: Region) -> Any:
    if isinstance(region, Disc):
        return cap_polygon(region.lat, region.lon, region.radius_rad)
    for attr in ("geometry", "_geometry"):
        geom = getattr(region, attr, None)
        if geom is not None:
            return geom
    return None
