"""``POST /leviathan/webhooks/github``: a forge's signed delivery wakes the targets it concerns, in seconds.

No Airflow login (GitHub cannot log in): the HMAC signature under the shared secret is the authentication.
Checked in this order, each answer cheap before any database work: body size (413), the source's rate
(429), the secret being configured (503, saying how), the signature (401), the headers and the JSON (400).
Then one short transaction (control.webhooks): the delivery id is recorded (a replay answers 200 and
records nothing again) and each concerned ``webhooks: true`` target gets one asset event on its change
asset, or is coalesced into a run that has not started yet. The cycle itself runs on the scheduler, so
the answer (202) comes as soon as that transaction commits. A database error answers 503 with nothing
kept: GitHub lets the delivery be redelivered.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from typing import Any

import anyio
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from leviathan_lib.control import webhook_setup as setup
from leviathan_lib.control.webhooks import Delivery, Replay, describe, receive
from leviathan_lib.core.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    PING,
    SIGNATURE_HEADER,
    Ignored,
    read_delivery,
    signature_valid,
)
from leviathan_lib.orchestrator import metrics

PATH = "/webhooks/github"
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_EVENT = re.compile(r"^[a-z_]{1,50}$")
#: Sources whose rate is tracked per process; the least recently seen is forgotten beyond this.
MAX_SOURCES = 10_000
#: Deliveries whose database work runs at once in one API-server process. A flood then waits in the event
#: loop (cheap) instead of taking every worker thread of the process: the API's other requests (health, the
#: UI, the tasks' execution API) keep threads and their share of the interpreter. Deliveries for one target
#: are serialized anyway (control.webhooks), so more threads would only contend.
MAX_CONCURRENT_DELIVERIES = 4


class RateLimiter:
    """A token bucket per source address (this process's share: each API-server replica bounds its own)."""

    def __init__(self, max_sources: int = MAX_SOURCES) -> None:
        self.max_sources = max_sources
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.lock = threading.Lock()

    def allow(self, source: str, per_minute: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self.lock:
            tokens, at = self.buckets.pop(source, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - at) * per_minute / 60.0)
            allowed = tokens >= 1.0
            self.buckets[source] = (tokens - 1.0 if allowed else tokens, now)
            while len(self.buckets) > self.max_sources:
                self.buckets.popitem(last=False)
        return allowed


class Refused(Exception):
    """A delivery answered before any database work (its status and why)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": self.detail}, status_code=self.status, headers=self.headers)


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None as soon as it is longer than ``limit`` (never read further)."""
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _count(outcome: str) -> None:
    metrics.incr(f"webhook.{outcome}")


def _delivery(request: Request, event: str, payload: Any, source: str) -> Delivery:
    change = read_delivery(event, payload)
    delivery_id = request.headers.get(DELIVERY_HEADER, "")
    if isinstance(change, Ignored):
        repository = payload.get("repository") if isinstance(payload, dict) else None
        name = repository.get("full_name") if isinstance(repository, dict) else None
        return Delivery(delivery_id, source, event, name if isinstance(name, str) else "", ignored=change.reason)
    targets = setup.targets_for(change)
    if change.event == PING:  # answered with the targets a change would wake; wakes none
        return Delivery(delivery_id, source, event, change.repository, targets=targets, ignored=PING)
    if not targets:
        return Delivery(delivery_id, source, event, change.repository, ignored="no_target")
    return Delivery(delivery_id, source, event, change.repository, targets=targets)


class _Threads:
    """The deliveries' own threads, made in the event loop on first use (as anyio requires)."""

    def __init__(self) -> None:
        self._limiter: anyio.CapacityLimiter | None = None

    def __call__(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(MAX_CONCURRENT_DELIVERIES)
        return self._limiter


async def _verified(request: Request, limiter: RateLimiter, threads: anyio.CapacityLimiter) -> tuple[str, Any, str]:
    """``(event, payload, source)`` of a signed, well-formed delivery; :class:`Refused` otherwise."""
    limits = setup.limits()
    body = await _bounded_body(request, limits.max_body_bytes)
    if body is None:
        raise Refused(413, f"body over {limits.max_body_bytes} bytes ([leviathan] webhook_max_body_bytes)")
    source = request.client.host if request.client else "unknown"
    if not limiter.allow(source, limits.rate_per_minute):
        _count("rate_limited")
        raise Refused(429, f"more than {limits.rate_per_minute} deliveries a minute from {source}",
                      {"Retry-After": "5"})
    try:
        secret = await to_thread.run_sync(setup.secret, limiter=threads)
    except setup.SecretMissing as exc:
        raise Refused(503, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 — the metadata DB or the secrets backend is down: retry later
        raise Refused(503, f"cannot read the webhook secret ({type(exc).__name__}); retry later") from None
    if not signature_valid(secret, body, request.headers.get(SIGNATURE_HEADER)):
        _count("bad_signature")
        raise Refused(401, f"missing or wrong {SIGNATURE_HEADER} (HMAC-SHA256 of the body)")
    event = request.headers.get(EVENT_HEADER, "")
    if not _EVENT.match(event) or not _DELIVERY_ID.match(request.headers.get(DELIVERY_HEADER, "")):
        raise Refused(400, f"{EVENT_HEADER} and {DELIVERY_HEADER} must name the event and the delivery")
    try:
        return event, json.loads(body), source
    except ValueError:
        raise Refused(400, "the body is not JSON") from None


def add_webhook_routes(app: FastAPI) -> None:
    limiter = RateLimiter()
    threads = _Threads()

    @app.post(PATH, status_code=202, summary="A GitHub webhook delivery (HMAC-signed; no Airflow login)")
    async def github(request: Request) -> JSONResponse:
        try:
            event, payload, source = await _verified(request, limiter, threads())
        except Refused as refused:
            return refused.response()
        try:
            delivery = await to_thread.run_sync(_delivery, request, event, payload, source, limiter=threads())
            outcomes = await to_thread.run_sync(receive, delivery, limiter=threads())
        except Replay:
            _count("replayed")
            return JSONResponse({"status": "ignored", "reason": "delivery_already_seen"}, status_code=200)
        except Exception as exc:  # noqa: BLE001 — nothing was kept (one transaction): GitHub may redeliver
            return JSONResponse({"detail": f"could not record the delivery ({type(exc).__name__}); redeliver it"},
                                status_code=503)
        if delivery.ignored == PING:
            return JSONResponse({"status": "pong", "repository": delivery.repository,
                                 "targets": list(delivery.targets)}, status_code=200)
        if delivery.ignored:
            _count(delivery.ignored)
            return JSONResponse({"status": "ignored", "reason": delivery.ignored,
                                 "repository": delivery.repository}, status_code=202)
        _count("accepted")
        return JSONResponse({"status": "accepted", "targets": describe(outcomes)}, status_code=202)
