"""Landmarks and devices: registry writes and per-device views."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from lightfence.identity.device import DeviceIdentity
from lightfence.model.signed_registry import sign_registry
from lightfence.verifier import crosscheck, evidence, queries, registry
from lightfence.verifier.api.deps import (
    FleetReaderDep,
    PrincipalDep,
    ServiceDep,
    WriterDep,
    require,
)
from lightfence.verifier.api.responses import (
    ERRORS,
    DeviceOut,
    DeviceRecordsOut,
    EvidenceOut,
    LandmarkHealthOut,
    LandmarkOut,
    PeerRttsOut,
    RegistryOut,
    SignedRegistryOut,
    VerdictHistoryOut,
)
from lightfence.verifier.api.schemas import (
    DeviceIn,
    LandmarkIn,
    LandmarkUpdate,
    LicenceIn,
    PeerRttsIn,
    StatusChange,
)
from lightfence.verifier.auth import Role
from lightfence.verifier.clock import iso, now_ns
from lightfence.verifier.errors import BadInput, Unavailable
from lightfence.verifier.models import LandmarkRow

router = APIRouter(responses=ERRORS)


def landmark_dict(row: LandmarkRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "lat": row.lat,
        "lon": row.lon,
        "position_error_km": row.position_error_km,
        "public_key": row.public_key,
        "key_id": row.key_id,
        "operator": row.operator,
        "status": row.status,
        "status_reason": row.status_reason,
        "updated_at": iso(row.updated_ns),
        "address": row.address,
        "gpu_address": row.gpu_address,
    }


def _put_landmark(
    service: ServiceDep, who: WriterDep, spec: registry.LandmarkSpec, *, rekey: bool
) -> JSONResponse:
    with service.write() as session:
        now = now_ns()
        row, created = registry.put_landmark(session, spec, who, now, rekey=rekey)
        crosscheck.refresh_links(session, spec.id, now)
        out = landmark_dict(row)
    return JSONResponse(out, status_code=201 if created else 200)


def _spec(landmark_id: str, body: LandmarkIn | LandmarkUpdate) -> registry.LandmarkSpec:
    return registry.LandmarkSpec(
        landmark_id,
        body.lat,
        body.lon,
        body.public_key,
        body.operator,
        body.position_error_km,
        body.address,
        body.gpu_address,
    )


@router.post(
    "/landmarks",
    tags=["landmarks"],
    summary="Register a landmark (admin); takes `lightfence landmark init`'s entry as it is "
    "(409 for an existing id with another key: re-key with PUT)",
    response_model=LandmarkOut,
    status_code=201,
    responses={200: {"model": LandmarkOut, "description": "the id existed: updated"}},
)
def create_landmark(body: LandmarkIn, service: ServiceDep, who: WriterDep) -> JSONResponse:
    return _put_landmark(service, who, _spec(body.id, body), rekey=False)


@router.put(
    "/landmarks/{landmark_id}",
    tags=["landmarks"],
    summary="Re-survey or re-key (admin)",
    response_model=LandmarkOut,
    responses={201: {"model": LandmarkOut, "description": "the id was new: registered"}},
)
def update_landmark(
    landmark_id: str, body: LandmarkUpdate, service: ServiceDep, who: WriterDep
) -> JSONResponse:
    return _put_landmark(service, who, _spec(landmark_id, body), rekey=True)


@router.get(
    "/landmarks",
    tags=["landmarks"],
    summary="The landmark registry",
    response_model=list[LandmarkOut],
)
def list_landmarks(service: ServiceDep, who: PrincipalDep) -> list[dict[str, Any]]:
    with service.read() as session:
        return [landmark_dict(r) for r in session.query(LandmarkRow).order_by(LandmarkRow.id)]


@router.get(
    "/landmarks/health",
    tags=["landmarks"],
    summary="Status and cross-check per landmark",
    response_model=list[LandmarkHealthOut],
)
def landmark_health(service: ServiceDep, who: PrincipalDep) -> list[dict[str, object]]:
    with service.read() as session:
        return crosscheck.health(session)


@router.post(
    "/landmarks/{landmark_id}/peer-rtts",
    tags=["landmarks"],
    summary="Report RTTs to other landmarks (cross-check)",
    response_model=PeerRttsOut,
)
def peer_rtts(
    landmark_id: str, body: PeerRttsIn, service: ServiceDep, who: WriterDep
) -> dict[str, Any]:
    rtts = [crosscheck.PeerRtt(r.peer_id, r.rtt_ms, r.measured_at_unix_ns) for r in body.rtts]
    with service.write() as session:
        flagged = crosscheck.report_peer_rtts(session, landmark_id, rtts, who, now_ns())
    return {"accepted": len(rtts), "flagged": flagged}


def _set_status(
    landmark_id: str, status: str, body: StatusChange, service: ServiceDep, who: WriterDep
) -> dict[str, Any]:
    require(who, Role.ADMIN)
    with service.write() as session:
        row = registry.set_landmark_status(session, landmark_id, status, body.reason, who, now_ns())
        return landmark_dict(row)


@router.post(
    "/landmarks/{landmark_id}/clear",
    tags=["landmarks"],
    summary="Clear a flag (admin)",
    response_model=LandmarkOut,
)
def clear_landmark(
    landmark_id: str, body: StatusChange, service: ServiceDep, who: WriterDep
) -> dict[str, Any]:
    return _set_status(landmark_id, "active", body, service, who)


@router.post(
    "/landmarks/{landmark_id}/flag",
    tags=["landmarks"],
    summary="Flag by hand (admin)",
    response_model=LandmarkOut,
)
def flag_landmark(
    landmark_id: str, body: StatusChange, service: ServiceDep, who: WriterDep
) -> dict[str, Any]:
    return _set_status(landmark_id, "flagged", body, service, who)


@router.post(
    "/landmarks/{landmark_id}/retire",
    tags=["landmarks"],
    summary="Retire (admin)",
    response_model=LandmarkOut,
)
def retire_landmark(
    landmark_id: str, body: StatusChange, service: ServiceDep, who: WriterDep
) -> dict[str, Any]:
    return _set_status(landmark_id, "retired", body, service, who)


def _licence(body: LicenceIn, service: ServiceDep) -> registry.Licence:
    return registry.Licence(
        policy=body.policy,
        bound=body.bound,
        declared_country=body.declared_country,
        site_lat=body.site_lat,
        site_lon=body.site_lon,
        checkin_interval_s=body.checkin_interval_s,
        min_checkin_interval_s=service.config.min_checkin_interval_s,
        gpu_id=body.gpu_id,
        require_locates=body.require_locates,
    )


@router.post(
    "/devices",
    tags=["devices"],
    summary="Enrol a device with its licence",
    response_model=DeviceOut,
    status_code=201,
    responses={200: {"model": DeviceOut, "description": "enrolled before with this licence"}},
)
def enrol(body: DeviceIn, service: ServiceDep, who: WriterDep) -> JSONResponse:
    try:
        identity = DeviceIdentity.from_json_dict(body.identity)
    except ValueError as exc:
        raise BadInput(f"identity: {exc}") from None
    with service.write() as session:
        row, created = registry.enrol_device(
            session, identity, _licence(body.licence, service), body.operator, who, now_ns()
        )
        out = queries.device_dict(row, None)
    return JSONResponse(out, status_code=201 if created else 200)


@router.get(
    "/devices",
    tags=["devices"],
    summary="Devices with their latest verdicts",
    response_model=list[DeviceOut],
)
def list_devices(service: ServiceDep, who: FleetReaderDep) -> list[dict[str, Any]]:
    with service.read() as session:
        return queries.list_devices(session, who)


@router.get(
    "/devices/{device_id}",
    tags=["devices"],
    summary="One device and its latest verdict",
    response_model=DeviceOut,
)
def get_device(device_id: str, service: ServiceDep, who: FleetReaderDep) -> dict[str, Any]:
    with service.read() as session:
        row = registry.get_device(session, device_id, who)
        return queries.device_dict(row, queries.latest_verdict(session, device_id))


@router.put(
    "/devices/{device_id}/licence",
    tags=["devices"],
    summary="Change a licence (admin)",
    response_model=DeviceOut,
)
def put_licence(
    device_id: str, body: LicenceIn, service: ServiceDep, who: WriterDep
) -> dict[str, Any]:
    with service.write() as session:
        row = registry.set_licence(session, device_id, _licence(body, service), who, now_ns())
        return queries.device_dict(row, None)


@router.get(
    "/devices/{device_id}/verdicts",
    tags=["devices"],
    summary="Verdict history, newest first, with the feasible region as GeoJSON",
    response_model=VerdictHistoryOut,
)
def verdict_history(
    device_id: str,
    service: ServiceDep,
    who: FleetReaderDep,
    limit: int = Query(100, ge=1, le=queries.MAX_PAGE),
    geojson: Literal["none", "latest", "all"] = "latest",
) -> dict[str, Any]:
    with service.read() as session:
        device = registry.get_device(session, device_id, who)
        history = queries.verdict_history(session, device_id, limit, geojson=geojson)
    # The identity's trust level qualifies every verdict (a software key can be copied).
    return {"device_id": device_id, "trust_level": device.trust_level, "verdicts": history}


@router.get(
    "/devices/{device_id}/evidence",
    tags=["devices"],
    summary="Evidence bundle for `lightfence verify` (identity, records, landmarks, verdict)",
    response_model=EvidenceOut,
)
def evidence_bundle(device_id: str, service: ServiceDep, who: FleetReaderDep) -> JSONResponse:
    with service.read() as session:
        bundle = evidence.device_bundle(session, device_id, who, now_ns())
    name = f"lightfence-evidence-{device_id}.json"
    return JSONResponse(bundle, headers={"content-disposition": f'attachment; filename="{name}"'})


@router.get(
    "/landmarks/registry.json",
    tags=["landmarks"],
    summary="Active landmarks as a registry file (for agents, and for auditors' --landmark-keys)",
    response_model=RegistryOut,
)
def registry_file(service: ServiceDep, who: PrincipalDep) -> dict[str, Any]:
    with service.read() as session:
        return evidence.registry_document(session)


@router.get(
    "/landmarks/registry.signed.json",
    tags=["landmarks"],
    summary="Active landmarks with addresses, signed by the verifier key (no token: for agents "
    "that pin GET /verifier/key)",
    response_model=SignedRegistryOut,
)
def signed_registry_file(service: ServiceDep) -> dict[str, Any]:
    key = service.signing_key
    if key is None:
        raise Unavailable(
            "this verifier has no signing key, so it cannot sign the landmark registry: start "
            "it with `lightfence serve --signing-key FILE`"
        )
    with service.read() as session:
        entries = evidence.active_landmarks(session)
    return sign_registry(entries, key, now_ns())


@router.post(
    "/devices/{device_id}/retire",
    tags=["devices"],
    summary="Retire (admin): its records and verdict tokens are refused from now on",
    response_model=DeviceOut,
)
def retire_device(
    device_id: str, body: StatusChange, service: ServiceDep, who: WriterDep
) -> dict[str, Any]:
    require(who, Role.ADMIN)
    with service.write() as session:
        row = registry.retire_device(session, device_id, body.reason, who, now_ns())
        return queries.device_dict(row, queries.latest_verdict(session, device_id))


@router.get(
    "/devices/{device_id}/records",
    tags=["devices"],
    summary="Stored records, newest first",
    response_model=DeviceRecordsOut,
)
def device_records(
    device_id: str,
    service: ServiceDep,
    who: FleetReaderDep,
    limit: int = Query(100, ge=1, le=queries.MAX_PAGE),
) -> dict[str, Any]:
    with service.read() as session:
        registry.get_device(session, device_id, who)
        return {
            "device_id": device_id,
            "records": queries.device_records(session, device_id, limit),
        }
