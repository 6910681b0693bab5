"""Per-route latency and status counts for every HTTP request (a pure ASGI middleware, which
costs far less per request than Starlette's BaseHTTPMiddleware)."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics


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
