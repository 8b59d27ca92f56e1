"""The FastAPI application: error mapping, body limits, metrics, and the background worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lightfence import __version__
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.errors import ServiceError
from lightfence.verifier.logs import log
from lightfence.verifier.service import Service


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """Refuses oversized bodies (413) before they are read, times and logs every request."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service
        self.limit = service.config.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_json(send, 413, {"error": self._too_large_message()})
            self._observe(scope, 413, started)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not status["sent"]:
                await _send_json(send, 413, {"error": self._too_large_message()})
            status["code"] = 413
        self._observe(scope, int(status["code"]), started)

    def _too_large_message(self) -> str:
        return (
            f"request body over {self.limit} bytes; send at most "
            f"{self.service.config.max_batch_records} records per request"
        )

    def _observe(self, scope: Scope, code: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", "unmatched")
        self.service.metrics.latency.labels(scope["method"], template, str(code)).observe(elapsed)
        log(
            "http",
            logging.INFO if code < 500 else logging.ERROR,
            method=scope["method"],
            path=scope["path"],
            status=code,
            ms=round(elapsed * 1000, 2),
        )


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = JSONResponse(body).body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _worker(service: Service) -> None:
    """Recompute verdicts of devices with new records; sweep for missed check-ins."""
    cfg = service.config
    last_sweep = 0.0
    while True:
        try:
            await asyncio.to_thread(service.recompute_all)
            if time.monotonic() - last_sweep >= cfg.checkin_sweep_interval_s:
                await asyncio.to_thread(service.sweep_checkins)
                last_sweep = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bad pass must not stop the worker; it is logged and retried
            logging.getLogger("lightfence.verifier").exception("worker pass failed")
        await asyncio.sleep(cfg.recompute_interval_s)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def create_app(config: VerifierConfig, *, worker: bool = True) -> FastAPI:
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_worker(service)) if worker else None
        log("verifier.start", db=service.db.write_engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            service.close()

    app = FastAPI(
        title="lightfence verifier",
        version=__version__,
        description="Fleet registry, signed-record ingestion, verdicts, alerts and evidence.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{_location(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(
            {"error": "invalid request: " + "; ".join(problems), "problems": problems},
            status_code=422,
        )

    @app.exception_handler(IntegrityError)
    async def _conflict(_: Request, exc: IntegrityError) -> JSONResponse:
        return JSONResponse(
            {"error": "conflicts with stored data (a duplicate id or name); nothing was written"},
            status_code=409,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("lightfence.verifier").error(
            "unhandled error on %s %s", request.method, request.url.path, exc_info=exc
        )
        return JSONResponse(
            {"error": "internal error; the verifier log has the details"}, status_code=500
        )

    from lightfence.verifier.api import routes_fleet, routes_records, routes_views

    app.include_router(routes_records.router)
    app.include_router(routes_fleet.router)
    app.include_router(routes_views.router)
    app.add_middleware(GuardMiddleware, service=service)
    return app
