"""Open-loop load for the reliability tests (the service runs as its own process:
`tests.service.support.service_process`).

The load is open-loop: request i is due at start + i / rate and its latency is measured from
that moment, so a stalled service shows up as queueing rather than as fewer requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcome:
    due: float  # seconds after the load started
    status: int  # HTTP status, 0 for a transport error
    latency_s: float  # from `due`, so queueing counts
    fail_open: bool = False
    prediction_version: str | None = None
    config_version: str | None = None
    index: int = 0  # the request's number: ``body_for(index)`` was sent
    fail_open_reason: str | None = None


@dataclass
class FixedRateLoad:
    """POSTs `body_for(i)` to `url` at `rate` requests/s from a background thread until stopped."""

    url: str
    rate: float
    body_for: object  # callable: index -> JSON body
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> FixedRateLoad:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def since(self, t: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.due >= t]

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.url, timeout=10, limits=limits) as client:
            tasks, i = set(), 0
            while not self._stop.is_set():
                due = i / self.rate
                delay = self.started + due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(client, i, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*tasks)

    async def _one(self, client: httpx.AsyncClient, i: int, due: float) -> None:
        reply: dict = {}
        try:
            response = await client.post("/filter", json=self.body_for(i))
            status = response.status_code
            if status == 200:
                reply = response.json()
        except httpx.TransportError:
            status = 0
        latency = time.monotonic() - self.started - due
        self.outcomes.append(
            Outcome(due, status, latency, reply.get("fail_open", False),
                    reply.get("prediction_version"), reply.get("config_version"), i,
                    reply.get("fail_open_reason"))
        )  # fmt: skip
