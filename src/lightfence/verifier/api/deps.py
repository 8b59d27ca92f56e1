"""Request dependencies: the service and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lightfence.verifier.auth import Principal, Role, authenticate
from lightfence.verifier.errors import Forbidden, Unauthorized
from lightfence.verifier.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_principal(request: Request, service: ServiceDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "send an API token as 'Authorization: Bearer TOKEN'; an admin creates one with "
            "`lightfence token create`"
        )
    with service.read() as session:
        who = authenticate(session, token.strip())
    if who is None:
        raise Unauthorized("this API token is unknown or revoked")
    request.state.principal = who
    return who


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(who: Principal, *roles: Role) -> None:
    if who.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"this needs a token with role {allowed}; yours is {who.role.value}")
