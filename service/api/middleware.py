"""ASGI middlewares run on every HTTP request: request ids, per-route latency and status counts
(pure ASGI middlewares, which cost far less per request than Starlette's BaseHTTPMiddleware)."""

from __future__ import annotations

import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conrec.service.core.logs import request_id
from conrec.service.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is echoed only if it is printable ASCII and short: it goes into every log line
# and back into a response header, so anything else is replaced by one of ours.
_VALID_REQUEST_ID = re.compile(rb"[\x20-\x7e]{1,128}").fullmatch


class RequestIdMiddleware:
    """The request's id (the caller's ``X-Request-ID`` if valid, else 32 random hex digits) is
    set in ``conrec.service.core.logs.request_id`` while the request is served, so that log lines
    carry it, and returned in the response's ``X-Request-ID`` header. Nothing is logged per
    request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), None)
        if value is None or not _VALID_REQUEST_ID(value):
            # 128 random bits, as a uuid4 has, in a fifth of uuid4().hex's time.
            value = os.urandom(16).hex().encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, value)]
            await send(message)

        token = request_id.set(value.decode("ascii"))
        await self.app(scope, receive, send_with_id)
        # Reset only on success: after an exception the server logs its traceback in this
        # same context, and that line must carry the id. Servers run each request in a task of
        # its own (a copied context), so the id cannot leak into the next request.
        request_id.reset(token)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Labelled children by route (and status): ``labels()`` builds and locks per call, a
        # visible cost per request. Bounded: routes are templates, statuses a small set.
        self._latency: dict[str, Any] = {}
        self._count: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The route template, never the raw path: raw paths would be unbounded labels.
            route = getattr(scope.get("route"), "path", "unmatched")
            latency = self._latency.get(route)
            if latency is None:
                latency = self._latency[route] = self.metrics.request_seconds.labels(route=route)
            latency.observe(time.perf_counter() - started)
            count = self._count.get((route, status))
            if count is None:
                count = self.metrics.requests.labels(route=route, status=str(status))
                self._count[(route, status)] = count
            count.inc()
