"""The Spider FastAPI app, mounted by the plugin under ``/leviathan`` on the Airflow API server.

Reads go to the metadata DB on every request (no per-process state), so replicas agree. Every route but
``/health`` and the forge's webhook receiver (HMAC-signed, ``spider.webhooks``) needs an authenticated
Airflow user (``/metrics`` can be made public); switching autonomy
needs an admin (and, when authenticated by the UI's cookie, a same-origin request). The event stream is
bounded: pages of at most 1000 events, a cap on concurrent live streams per process, and a maximum stream
lifetime after which the client resumes with its last id. Every response carries security headers
(:class:`SecurityHeaders`); there are no Swagger/ReDoc pages, which would need third-party scripts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leviathan_lib.control import fleet, switch
from leviathan_lib.control.evidence_db import MAX_PAGE, read_events
from leviathan_lib.control.health import health as stack_health
from leviathan_lib.core.autonomy import GLOBAL_SWITCH_VARIABLE
from leviathan_lib.core.names import dag_id
from leviathan_lib.spider.auth import AdminUser, GetUserDep, metrics_access, username
from leviathan_lib.spider.view import add_view
from leviathan_lib.spider.webhooks import add_webhook_routes

#: Largest accepted event id (asset event ids times 100 stay far below this).
MAX_EVENT_ID = 2**62
MAX_STREAMS = 16
STREAM_SECONDS = 300.0
POLL_SECONDS = 1.0


class AutonomyChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


class Streams:
    """Live SSE streams in this process (a bound, not shared state: each replica bounds its own)."""

    def __init__(self, limit: int):
        self.limit, self.count = limit, 0


#: For everything but the operator page: nothing may be loaded, framed or submitted from a response.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class SecurityHeaders:
    """Pure ASGI middleware (it leaves streaming responses alone) adding security headers to every response.

    A response that set its own Content-Security-Policy (the operator page) keeps it; every other one gets
    :data:`API_CSP` and may not be framed. Nothing is cached: the state shown changes with every cycle.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Cache-Control", "no-store")
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = API_CSP
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _autonomy() -> dict[str, Any]:
    overview, _, _ = fleet.overview()
    return {
        "global": {"enabled": overview.global_enabled, "detail": overview.global_detail,
                   "variable": GLOBAL_SWITCH_VARIABLE},
        "targets": [t.model_dump(mode="json", include={
            "target_id", "dag_id", "target_flag", "dag_paused", "breaker_open", "consecutive_failures",
            "breaker_threshold", "effective_enabled", "llm_budget_exhausted", "llm_budget_detail"})
            for t in overview.targets],
    }


def _sse(events: list[Any]) -> str:
    return "".join(f"id: {e.id}\nevent: {e.type}\ndata: {e.model_dump_json()}\n\n" for e in events)


async def _event_stream(request: Request, streams: Streams, cursor: int, limit: int) -> AsyncIterator[str]:
    """Server-Sent Events after ``cursor`` until the client leaves or the stream's lifetime ends.

    The caller counted this stream in ``streams``; it is uncounted when the stream ends, however it ends.
    """
    deadline = time.monotonic() + STREAM_SECONDS
    try:
        yield f"retry: {int(POLL_SECONDS * 1000)}\n\n"
        while time.monotonic() < deadline and not await request.is_disconnected():
            page = await run_in_threadpool(read_events, after=cursor, limit=limit)
            if page:
                cursor = page[-1].id
                yield _sse(page)
                continue
            yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)
    finally:
        streams.count -= 1


def _add_status_routes(app: FastAPI) -> None:
    @app.get("/health", summary="Component health (healthy, degraded: 200; unhealthy: 503); no authentication")
    def health() -> JSONResponse:
        switch.record_outside_changes()
        status_, components = stack_health()
        return JSONResponse({"status": status_, "components": components},
                            status_code=503 if status_ == "unhealthy" else 200)

    @app.get("/metrics", dependencies=[Depends(metrics_access)], summary="Prometheus metrics from the evidence")
    def metrics() -> Response:
        from leviathan_lib.control.health import scheduler_heartbeat
        from leviathan_lib.spider.metrics import CONTENT_TYPE, render

        switch.record_outside_changes()
        overview, _, _ = fleet.overview()
        return Response(render(overview, scheduler_heartbeat=scheduler_heartbeat()), media_type=CONTENT_TYPE)


def _add_event_routes(app: FastAPI, streams: Streams) -> None:
    @app.get("/events", summary="Events after an id: JSON lines, or Server-Sent Events")
    async def events(
        request: Request,
        user: GetUserDep,
        *,
        after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 500,
        accept: Annotated[str, Header()] = "",
        last_event_id: Annotated[int | None, Header(ge=0, le=MAX_EVENT_ID)] = None,
    ) -> Response:
        if "text/event-stream" not in accept:
            page = await run_in_threadpool(read_events, after=after, limit=limit)
            body = "".join(e.model_dump_json() + "\n" for e in page)
            headers = {"X-Leviathan-Next-After": str(page[-1].id if page else after)}
            return Response(body, media_type="application/x-ndjson", headers=headers)
        if streams.count >= streams.limit:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "too many live event streams; retry later",
                                headers={"Retry-After": "5"})
        streams.count += 1
        stream = _event_stream(request, streams, max(after, last_event_id or 0), limit)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _add_autonomy_routes(app: FastAPI) -> None:
    @app.get("/autonomy", summary="Global switch and each target's effective state")
    def get_autonomy(user: GetUserDep) -> dict[str, Any]:
        return _autonomy()

    @app.put("/autonomy", summary="Switch autonomy on or off globally (admin only)")
    def put_autonomy(change: AutonomyChange, user: AdminUser) -> dict[str, Any]:
        record = switch.set_global(change.enabled, by=username(user), reason=change.reason)
        return {"changed": record.model_dump(mode="json"), **_autonomy()}

    @app.put("/autonomy/{target_id}", summary="Switch one target on or off: unpause or pause its DAG (admin only)")
    def put_target_autonomy(
        change: AutonomyChange, user: AdminUser,
        target_id: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")],
    ) -> dict[str, Any]:
        if target_id not in fleet.named_targets():
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no configured target {target_id!r}")
        try:
            record = switch.set_target(target_id, dag_id(target_id), change.enabled, by=username(user),
                                       reason=change.reason)
        except switch.UnknownTarget as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return {"changed": record.model_dump(mode="json"), **_autonomy()}


def create_app() -> FastAPI:
    """The Spider app; each ``_add_*`` helper adds one group of routes."""
    app = FastAPI(title="Leviathan Spider", description=__doc__.splitlines()[0], docs_url=None, redoc_url=None)
    app.add_middleware(SecurityHeaders)
    _add_status_routes(app)
    _add_event_routes(app, Streams(MAX_STREAMS))
    _add_autonomy_routes(app)
    add_webhook_routes(app)  # POST /webhooks/github (spider.webhooks)
    add_view(app)  # the HTML pages under /ui (spider.view)
    return app
