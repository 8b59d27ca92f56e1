"""GET /stream: the stream workers' consumer lag, for a dashboard panel (docs/fleet.md)."""

from __future__ import annotations

import asyncio
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
    state = request.app.state
    lock: asyncio.Lock | None = getattr(state, "stream_lock", None)
    if lock is None:
        lock = state.stream_lock = asyncio.Lock()
    arrived = time.monotonic()
    async with lock:  # one broker read at a time per API process
        last: tuple[float, dict[str, Any] | str] | None = getattr(state, "stream_last", None)
        # A read that ended after this request arrived was in flight meanwhile: its answer is
        # as fresh as this request can have, so a burst of readers (many dashboards, a token
        # polling hard) costs the broker one read, and a broker that does not answer (5 s a
        # round trip, three of them) one wait. A request after it reads afresh: each read is a
        # point of the dashboard's lag history.
        if last is None or last[0] < arrived:
            last = state.stream_last = await _read(state, url, service.config.stream_group)
    if isinstance(last[1], str):
        raise Unavailable(last[1])
    return last[1]


async def _read(state: Any, url: str, group: str) -> tuple[float, dict[str, Any] | str]:
    """One broker read, as (when it ended, the answer or why there is none: a 503)."""
    try:
        lag = await run_in_threadpool(group_lag, StreamSource(url, group))
    except LagUnavailable as exc:
        return time.monotonic(), str(exc)
    rate: OffsetRate | None = getattr(state, "stream_rate", None)
    if rate is None:
        rate = state.stream_rate = OffsetRate()
    now = time.monotonic()
    return now, {"configured": True, **lag, **rate.update(lag, now)}
