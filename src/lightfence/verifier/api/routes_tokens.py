"""API tokens over HTTP (admin): what `lightfence token create|list|revoke --verifier URL` calls,
so an admin manages tokens without a shell on the verifier's host. The secrets are stored hashed;
a new one is shown once, in the answer that creates it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from lightfence.verifier.api.deps import PrincipalDep, ServiceDep, WriterDep, require
from lightfence.verifier.api.responses import ERRORS, NewTokenOut, TokenOut
from lightfence.verifier.api.schemas import TokenIn
from lightfence.verifier.auth import Role, TokenError, create_token, revoke_token
from lightfence.verifier.clock import iso, now_ns
from lightfence.verifier.errors import BadInput, Conflict, NotFound
from lightfence.verifier.models import ApiTokenRow

router = APIRouter(responses=ERRORS, tags=["tokens"])


def _row(service: ServiceDep, name: str) -> ApiTokenRow | None:
    with service.read() as session:
        stmt = select(ApiTokenRow).where(ApiTokenRow.name == name)
        return session.execute(stmt).scalar_one_or_none()


@router.post(
    "/tokens",
    summary="Create a token (admin); its secret is in this answer only",
    response_model=NewTokenOut,
    status_code=201,
)
def create(body: TokenIn, service: ServiceDep, who: WriterDep) -> JSONResponse:
    require(who, Role.ADMIN)
    if _row(service, body.name) is not None:
        raise Conflict(f"a token named {body.name!r} exists; pick another name or revoke it")
    try:
        with service.write() as session:
            secret = create_token(
                session,
                name=body.name,
                role=Role(body.role),
                owner=body.owner,
                actor=who.actor,
                now_ns=now_ns(),
            )
    except TokenError as exc:
        raise BadInput(str(exc)) from None
    out = {"name": body.name, "role": body.role, "owner": body.owner, "token": secret}
    return JSONResponse(out, status_code=201)


@router.get(
    "/tokens",
    summary="Tokens (admin): names, roles, owners; never the secrets",
    response_model=list[TokenOut],
)
def list_tokens(service: ServiceDep, who: PrincipalDep) -> list[dict[str, Any]]:
    require(who, Role.ADMIN)
    with service.read() as session:
        rows = session.execute(select(ApiTokenRow).order_by(ApiTokenRow.name)).scalars().all()
        return [
            {
                "name": r.name,
                "role": r.role,
                "owner": r.owner,
                "state": f"revoked {iso(r.revoked_ns)}" if r.revoked_ns else "active",
            }
            for r in rows
        ]


@router.post(
    "/tokens/{name}/revoke",
    summary="Revoke a token (admin); requests with it fail from now on",
    response_model=TokenOut,
)
def revoke(name: str, service: ServiceDep, who: WriterDep) -> dict[str, Any]:
    require(who, Role.ADMIN)
    row = _row(service, name)
    if row is None:
        raise NotFound(f"no token named {name!r}")
    if row.revoked_ns is not None:
        raise Conflict(f"token {name!r} is already revoked")
    now = now_ns()
    with service.write() as session:
        revoke_token(session, name=name, actor=who.actor, now_ns=now)
    return {"name": name, "role": row.role, "owner": row.owner, "state": f"revoked {iso(now)}"}
