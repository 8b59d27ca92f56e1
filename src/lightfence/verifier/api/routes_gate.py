"""Signed verdict tokens for the operator's compliance gate (`lightfence gate`, docs/gate.md).

The service signs what it already decided; the gate checks the signature offline. Nothing here
can change a device: a token only says what the latest verdict was, for a few minutes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lightfence.core.kinds import VerdictKind
from lightfence.gate.issuer import token_for_latest_verdict, token_response
from lightfence.verifier import queries, registry
from lightfence.verifier.api.deps import PrincipalDep, ServiceDep
from lightfence.verifier.api.responses import ERRORS, DeviceTokenOut, VerifierKeyOut
from lightfence.verifier.clock import now_ns
from lightfence.verifier.errors import NotFound, Unavailable

router = APIRouter(responses=ERRORS)

_NO_KEY = (
    "this verifier has no token signing key: start it with `lightfence serve --signing-key FILE`"
)


@router.get(
    "/verifier/key",
    tags=["gate"],
    summary="The public key that signs verdict tokens (no token needed: it is public)",
    response_model=VerifierKeyOut,
)
def verifier_key(service: ServiceDep) -> dict[str, Any]:
    key = service.signing_key
    if key is None:
        raise Unavailable(_NO_KEY)
    return {"public_key": key.public_bytes.hex(), "key_id": key.key_id}


@router.get(
    "/devices/{device_id}/token",
    tags=["gate"],
    summary="A short-lived token, signed by the verifier, carrying the device's latest verdict",
    response_model=DeviceTokenOut,
)
def device_token(device_id: str, service: ServiceDep, who: PrincipalDep) -> dict[str, Any]:
    key = service.signing_key
    if key is None:
        raise Unavailable(_NO_KEY)
    with service.read() as session:
        device = registry.get_device(session, device_id, who)  # 404 as for the device itself
        if device.retired_ns is not None:
            raise NotFound(f"device {device_id} is retired: no verdict token is issued for it")
        latest = queries.latest_verdict(session, device_id)
    if latest is None:
        raise NotFound(f"device {device_id} has no verdict yet: it must check in first")
    now = now_ns()
    text = token_for_latest_verdict(
        device_id=device_id,
        verdict=VerdictKind(latest.kind),
        policy=queries.verdict_policy(latest),
        signing_key=key,
        now_unix_s=now / 1e9,
        ttl_s=service.config.token_ttl_s,
        verdict_at_unix_s=latest.as_of_ns / 1e9,
    )
    return token_response(text)
