"""Benchmark: what one /filter request costs in process, against the bare app, per body kind.

No sockets: both ASGI apps (the service's, and the bare endpoint's from
``test_filter_throughput``) are called directly with the same bodies, four requests in flight
as under ``wrk -c4``, every request naming the next user with predictions in a real
redis-server, with the run cache off, so every request reads Redis (what a cache miss costs;
``test_filter_throughput`` measures the cache on realistic traffic). The network stack, the
HTTP server and the load generator, which move the HTTP benchmark's rates by up to 2x between
runs, are left out, so the figures are steady enough to compare commits: each app's own time
per request, and their difference, the filter's own work. Both run on uvloop with the
collector tuned as the service tunes it and one BLAS thread.

The pieces of an id-only request are then timed alone, one at a time (``timed_parts``): the
lookup on strings decoded afresh for each call (as in a request) and the Redis read awaited
alone, so the sum of the pieces is less than a request under concurrency, whose lookups and
scoring miss the cache more.

Run: pytest -m benchmark tests/benchmarks/test_filter_cpu.py -s
"""

from __future__ import annotations

import asyncio
import time
import timeit
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path

import pytest
import uvloop
from threadpoolctl import threadpool_limits

from conrec.service import filtering
from conrec.service.api.schemas import decode_request
from conrec.service.core.config import Settings
from conrec.service.main import create_app, tune_collector
from tests.benchmarks.test_filter_throughput import (
    BODIES,
    CONNECTIONS,
    N_USERS,
    USER,
    bare_app,
    write_inputs,
)
from tests.redis_support import private_redis

pytestmark = pytest.mark.benchmark

REQUESTS, ROUNDS = 4_000, 3
_ITEM_ID = attrgetter("item_id")
# The same bodies on a surface serving the calibrated score (`score: calibrated`).
CALIBRATED = ("ids:calibrated", "sids:calibrated")


async def call(app, path: bytes, body: bytes) -> int:
    """One request through ``app`` as a server would pass it; the response status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays connected: never disconnects

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def us_per_request(app, path: bytes, template: bytes) -> float:
    """Wall microseconds per request. With four requests in flight the event loop is seldom
    idle, so this is close to the CPU time per request (measured: within 3%)."""
    head, tail = template.split(USER.encode())
    bodies = iter([b"%suser-%d%s" % (head, i % N_USERS, tail) for i in range(REQUESTS)])
    assert await call(app, path, template.replace(USER.encode(), b"user-0")) == 200

    async def client() -> None:
        for body in bodies:
            assert await call(app, path, body) == 200

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return (time.perf_counter() - started) / REQUESTS * 1e6


def best_us(fn: Callable[[], object], number: int = 500) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


async def timed_parts(app, template: bytes) -> dict[str, float]:
    """Microseconds of each piece of an id-only request, alone and idle."""
    state = app.state.service
    body = template.replace(USER.encode(), b"user-0")
    loaded = state.codebooks.current
    request = decode_request(body)
    ids = list(map(_ITEM_ID, request.candidates))
    resolved = filtering.resolve(loaded, request.candidates, ids, ids_only=True)
    prediction, _ = await filtering.fetch_prediction(state, "user-0")
    assert prediction is not None  # every piece below does real work
    assert not resolved.unknown

    def decoded_ids() -> list[str]:
        return list(map(_ITEM_ID, decode_request(body).candidates))

    # CPU time, not wall: awaited alone, a read mostly waits for redis-server's answer.
    started = time.process_time()
    for i in range(REQUESTS):
        await filtering.fetch_prediction(state, f"user-{i % N_USERS}")
    redis_read = (time.process_time() - started) / REQUESTS * 1e6
    decoding = best_us(decoded_ids)
    scoring = best_us(lambda: resolved.scores(prediction))
    return {
        "body decoded, ids listed (the bare app does the same)": decoding,
        "item-id lookup, on new strings": best_us(lambda: loaded.items.rows_of(decoded_ids()))
        - decoding,
        "item-id lookup, same strings again (hashes cached)": best_us(
            lambda: loaded.items.rows_of(ids)
        ),
        "scoring (prediction decoded, vectors gathered, max cosine)": scoring,
        "Redis read (fetch_prediction, awaited alone; CPU time)": redis_read,
        "split into kept and dropped": best_us(
            lambda: filtering.split(ids, resolved.scores(prediction), 0.9)
        )
        - scoring,
    }


def test_filter_cpu_per_request(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (_, redis_url), threadpool_limits(1, user_api="blas"):
        templates, _, _, thresholds = write_inputs(tmp_path, redis_url)
        settings = Settings(
            codebook_dir=str(tmp_path / "codebook"),
            redis_url=redis_url,
            store_prefix="bench",
            thresholds_file=str(thresholds),
            prediction_cache_entries=0,
        )
        app, bare = create_app(settings), bare_app()

        async def measure() -> tuple[dict[str, list[tuple[float, float]]], dict[str, float]]:
            async with app.router.lifespan_context(app):
                tune_collector()
                kinds = (*BODIES, *CALIBRATED)
                runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
                for _ in range(ROUNDS):  # interleaved: the machine is shared and noisy
                    for kind in kinds:
                        bare_us = await us_per_request(bare, b"/bare", templates[kind])
                        filter_us = await us_per_request(app, b"/filter", templates[kind])
                        runs[kind].append((bare_us, filter_us))
                return runs, await timed_parts(app, templates["ids"])

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runs, parts = runner.run(measure())

    print(
        f"\nin process, {REQUESTS:,} requests x {ROUNDS} rounds, {CONNECTIONS} in flight, "
        "best round of each app"
    )
    print("body             bare us/req  filter us/req  filter's own work us  ratio")
    ratio = {}
    for kind, pairs in runs.items():
        bare_us, filter_us = min(b for b, _ in pairs), min(f for _, f in pairs)
        ratio[kind] = bare_us / filter_us
        print(
            f"{kind:15}  {bare_us:11.0f}  {filter_us:13.0f}  {filter_us - bare_us:20.0f}  "
            f"{ratio[kind]:5.2f}"
        )
    print("\nid-only request, its pieces alone, idle:")
    for part, us in parts.items():
        print(f"  {part:60} {us:6.1f} us")
    for kind, pairs in runs.items():
        own = min(f for _, f in pairs) - min(b for b, _ in pairs)
        print(f"filter_{kind.replace(':', '_')}_own_work_us_in_process: {own:.0f}")
    for kind in CALIBRATED:
        plain = kind.split(":")[0]
        # The goal: the calibrated score's ratio to bare within 0.9x of the max cosine's.
        print(f"filter_{plain}_calibrated_vs_max_cosine_ratio: {ratio[kind] / ratio[plain]:.2f}")
    assert all(f > b for pairs in runs.values() for b, f in pairs)
    assert parts["item-id lookup, on new strings"] > 0
