"""The FastAPI application: error mapping, body limits, security headers, metrics, and the
background worker (verdicts, check-in sweeps, signed audit checkpoints)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lightfence import __version__
from lightfence.verifier.api.headers import docs_csp, security_headers
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.errors import RateLimited, ServiceError
from lightfence.verifier.logs import log
from lightfence.verifier.service import Service


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """Refuses oversized bodies (413) before they are read, adds the security headers to every
    response (API, dashboard, errors), times and logs every request."""

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
            await _send_json(send, 413, {"detail": self._too_large_message()})
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
                message = {**message, "headers": security_headers(message.get("headers") or [])}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not status["sent"]:
                await _send_json(send, 413, {"detail": self._too_large_message()})
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
            "headers": security_headers(
                [(b"content-type", b"application/json"), (b"connection", b"close")]
            ),
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _worker(service: Service) -> None:
    """Recompute verdicts of devices with new records; sweep for missed check-ins."""
    cfg = service.config
    last_sweep = last_checkpoint = 0.0
    while True:
        try:
            await asyncio.to_thread(service.recompute_all)
            if time.monotonic() - last_sweep >= cfg.checkin_sweep_interval_s:
                await asyncio.to_thread(service.sweep_checkins)
                last_sweep = time.monotonic()
            if time.monotonic() - last_checkpoint >= cfg.checkpoint_interval_s:
                await asyncio.to_thread(service.checkpoint)
                last_checkpoint = time.monotonic()
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
            with contextlib.suppress(Exception):  # a last checkpoint of the final head
                service.checkpoint()
            service.close()

    app = FastAPI(
        title="lightfence verifier",
        version=__version__,
        description="Fleet registry, signed-record ingestion, verdicts, alerts and evidence.",
        lifespan=lifespan,
        docs_url=None,  # served below with a CSP that lets Swagger UI's own script run
        redoc_url=None,
    )
    app.state.service = service

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{_location(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(
            {"detail": "invalid request: " + "; ".join(problems), "problems": problems},
            status_code=422,
        )

    @app.exception_handler(IntegrityError)
    async def _conflict(_: Request, exc: IntegrityError) -> JSONResponse:
        return JSONResponse(
            {"detail": "conflicts with stored data (a duplicate id or name); nothing was written"},
            status_code=409,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("lightfence.verifier").error(
            "unhandled error on %s %s", request.method, request.url.path, exc_info=exc
        )
        return JSONResponse(
            {"detail": "internal error; the verifier log has the details"}, status_code=500
        )

    docs = get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=app.title)
    docs_headers = {"content-security-policy": docs_csp(bytes(docs.body).decode())}

    @app.get("/docs", include_in_schema=False)
    def _docs() -> HTMLResponse:
        return HTMLResponse(bytes(docs.body), headers=docs_headers)

    from lightfence.dashboard import mount_dashboard
    from lightfence.verifier.api import (
        routes_board,
        routes_fleet,
        routes_gate,
        routes_gpu,
        routes_records,
        routes_stream,
        routes_tokens,
        routes_views,
    )

    app.include_router(routes_records.router)
    app.include_router(routes_gpu.router)
    app.include_router(routes_fleet.router)
    app.include_router(routes_views.router)
    app.include_router(routes_gate.router)
    app.include_router(routes_tokens.router)
    app.include_router(routes_board.router)
    app.include_router(routes_stream.router)
    mount_dashboard(app)
    app.add_middleware(GuardMiddleware, service=service)
    return app
