"""GET /stream: the stream workers' consumer lag, for a dashboard panel (docs/fleet.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from lightfence.verifier.api.deps import PrincipalDep, ServiceDep, require
from lightfence.verifier.api.responses import ERRORS
from lightfence.verifier.auth import Role
from lightfence.verifier.errors import Unavailable
from lightfence.verifier.stream_lag import LagUnavailable, StreamSource, group_lag

router = APIRouter(responses=ERRORS)


@router.get("/stream", tags=["operations"], summary="Kafka ingestion: consumer lag per partition")
async def stream(service: ServiceDep, who: PrincipalDep) -> dict[str, Any]:
    """`{"configured": false}` unless `lightfence serve --stream kafka://HOST:PORT/TOPIC`; else
    the workers' group, and per partition its committed offset, end and lag."""
    require(who, Role.ADMIN, Role.AUDITOR)
    url = service.config.stream_url
    if url is None:
        return {"configured": False}
    try:
        lag = await run_in_threadpool(group_lag, StreamSource(url, service.config.stream_group))
    except LagUnavailable as exc:
        raise Unavailable(str(exc)) from None
    return {"configured": True, **lag}
