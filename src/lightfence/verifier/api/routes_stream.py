"""GET /stream: the stream workers' consumer lag, for a dashboard panel (docs/fleet.md)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from lightfence.verifier.api.deps import PrincipalDep, ServiceDep, require
from lightfence.verifier.api.responses import ERRORS
from lightfence.verifier.auth import Role
from lightfence.verifier.errors import Unavailable
from lightfence.verifier.stream_lag import LagUnavailable, OffsetRate, StreamSource, group_lag

router = APIRouter(responses=ERRORS)


@router.get("/stream", tags=["operations"], summary="Kafka ingestion: consumer lag per partition")
async def stream(request: Request, service: ServiceDep, who: PrincipalDep) -> dict[str, Any]:
    """`{"configured": false}` unless `lightfence serve --stream kafka://HOST:PORT/TOPIC`; else
    the workers' group, per partition its committed offset, end and lag, and the records/s the
    group consumes and the topic receives, from this API process's reads of the last minute
    (null on its first read)."""
    require(who, Role.ADMIN, Role.AUDITOR)
    url = service.config.stream_url
    if url is None:
        return {"configured": False}
    try:
        lag = await run_in_threadpool(group_lag, StreamSource(url, service.config.stream_group))
    except LagUnavailable as exc:
        raise Unavailable(str(exc)) from None
    rate: OffsetRate | None = getattr(request.app.state, "stream_rate", None)
    if rate is None:
        rate = request.app.state.stream_rate = OffsetRate()
    return {"configured": True, **lag, **rate.update(lag, time.monotonic())}
