"""Request dependencies: the service, the calling principal (HTTP bearer token), write budgets."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lightfence.verifier.auth import Principal, Role, authenticate
from lightfence.verifier.errors import Forbidden, RateLimited, Unauthorized
from lightfence.verifier.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]

bearer = HTTPBearer(
    auto_error=False,  # our own 401 says how to get a token
    description="An API token (`lft_...`) from `lightfence token create`",
)


def get_principal(
    request: Request,
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Unauthorized(
            "send an API token as 'Authorization: Bearer TOKEN'; an admin creates one with "
            "`lightfence token create`"
        )
    with service.read() as session:
        who = authenticate(session, token)
    if who is None:
        raise Unauthorized("this API token is unknown or revoked")
    request.state.principal = who
    return who


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_writer(who: PrincipalDep, service: ServiceDep) -> Principal:
    """The principal of a write request, once its token's write budget allows one more."""
    refused = service.limits.admit_write(who.name)
    if refused is not None:
        why, wait_s = refused
        raise RateLimited(f"rate limited: {why}; retry in {wait_s:.0f} s", wait_s)
    return who


WriterDep = Annotated[Principal, Depends(get_writer)]


def get_fleet_reader(who: PrincipalDep) -> Principal:
    """The principal of a read of the fleet (devices, verdicts, alerts, evidence, dashboard).

    Landmark tokens are held by third parties who run a server, not by the fleet's owners: they
    submit measurements and never read where anyone's GPUs are (operators see only their own
    devices, queries.py)."""
    require(who, Role.ADMIN, Role.AUDITOR, Role.OPERATOR)
    return who


FleetReaderDep = Annotated[Principal, Depends(get_fleet_reader)]


def require(who: Principal, *roles: Role) -> None:
    if who.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"this needs a token with role {allowed}; yours is {who.role.value}")
