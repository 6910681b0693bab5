"""Benchmark: the service's Redis reads, multiplexed on one connection vs redis-py's asyncio client.

20,000 GETs of 120-byte values (a prediction's size) from 4 concurrent readers, as /filter's
requests overlap, on uvloop as the service runs; CPU seconds per GET of this process (the
reader's own cost, what /filter pays per request) and of redis-server (from its INFO, what the
reads cost the machine beside it), best of 3 interleaved rounds.

Run: pytest -m benchmark tests/benchmarks/test_redis_reads.py -s
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio
import uvloop

from conrec.store.multiplexed import MultiplexedRedis
from tests.redis_support import private_redis

pytestmark = pytest.mark.benchmark

GETS, READERS, ROUNDS, KEYS = 20_000, 4, 3, 10_000


def server_cpu_s(admin: redis.Redis) -> float:
    cpu = admin.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def cpu_us_per_get(make_client: Callable[[], object], admin: redis.Redis) -> tuple[float, float]:
    """CPU µs per GET of this process and of the server."""

    async def run() -> tuple[float, float]:
        client = make_client()
        try:

            async def reader(offset: int) -> None:
                for i in range(GETS // READERS):
                    assert await client.get(f"user-{(offset + i) % KEYS}") is not None

            await reader(0)  # connect and warm up
            server_started = server_cpu_s(admin)
            started = time.process_time()
            await asyncio.gather(*(reader(r * 997) for r in range(READERS)))
            own = time.process_time() - started
            return own / GETS * 1e6, (server_cpu_s(admin) - server_started) / GETS * 1e6
        finally:
            await client.aclose()

    return uvloop.run(run())


def test_multiplexed_reads_vs_redis_py(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (_, url):
        clients = {
            "redis-py asyncio": lambda: redis.asyncio.Redis.from_url(url),
            "multiplexed": lambda: MultiplexedRedis(url),
        }
        best = {name: (float("inf"), float("inf")) for name in clients}
        with redis.Redis.from_url(url) as admin:
            admin.mset({f"user-{i}": bytes(120) for i in range(KEYS)})
            for _ in range(ROUNDS):
                for name, make in clients.items():
                    own, server = cpu_us_per_get(make, admin)
                    best[name] = (min(best[name][0], own), min(best[name][1], server))
    print(f"\n{GETS:,} GETs from {READERS} concurrent readers, CPU µs per GET (best of {ROUNDS})")
    print("reader              reader  redis-server")
    for name, (own, server) in best.items():
        print(f"{name:18} {own:7.1f}  {server:12.1f}")
    ratio = best["redis-py asyncio"][0] / best["multiplexed"][0]
    server_ratio = best["redis-py asyncio"][1] / best["multiplexed"][1]
    print(f"multiplexed_vs_redis_py_reads_per_cpu_s_ratio: {ratio:.2f}")
    print(f"multiplexed_vs_redis_py_server_reads_per_cpu_s_ratio: {server_ratio:.2f}")
    assert ratio > 0
    assert server_ratio > 0
