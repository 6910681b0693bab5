"""The multiplexed reader against real redis-server processes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import redis
import redis.asyncio

from conrec.store.connection import connect_async
from conrec.store.multiplexed import MultiplexedRedis
from tests.redis_support import private_redis


def reader_connections(url: str) -> int:
    """Clients connected to the server at ``url``, not counting the one asking."""
    with redis.Redis.from_url(url) as admin:
        return len(admin.client_list()) - 1


def test_concurrent_reads_each_get_their_own_value_on_one_connection(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (_, url):
        with redis.Redis.from_url(url) as admin:
            admin.mset({f"k{i}": f"value-{i}".encode() for i in range(500)})

        async def read() -> tuple[list, int]:
            client = MultiplexedRedis(url)
            try:
                keys = [f"k{i}" for i in range(500)] + ["missing"]
                got = await asyncio.gather(*(client.get(k) for k in keys))
                return got, await asyncio.to_thread(reader_connections, url)
            finally:
                await client.aclose()

        got, connections = asyncio.run(read())
    assert got == [f"value-{i}".encode() for i in range(500)] + [None]
    assert connections == 1


def test_reads_issued_together_reach_redis_in_one_write(tmp_path: Path) -> None:
    """Auto-pipelining: the GETs of one event-loop round go out in one write, which Redis
    reads in one go, rather than waking the server once per GET."""
    with private_redis(tmp_path) as (_, url), redis.Redis.from_url(url) as admin:
        admin.mset({f"k{i}": b"v" for i in range(200)})

        def reads() -> int:  # this INFO is one read of its own
            return admin.info("stats")["total_reads_processed"]

        async def read() -> int:
            client = MultiplexedRedis(url)
            try:
                await client.get("k0")  # opens the connection
                before = await asyncio.to_thread(reads)
                got = await asyncio.gather(*(client.get(f"k{i}") for i in range(200)))
                assert got == [b"v"] * 200
                return await asyncio.to_thread(reads) - before
            finally:
                await client.aclose()

        server_reads = asyncio.run(read())
    # The batch of 200 (about 6 kB) may arrive in two segments; one read is the INFO itself.
    assert server_reads <= 3


def test_password_and_db_from_the_url(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (_, url):
        base = url.removesuffix("/0").replace("redis://", "redis://:s3cret@")
        with redis.Redis.from_url(url.removesuffix("/0") + "/3") as admin:
            admin.set("k", b"in db 3")
            admin.config_set("requirepass", "s3cret")

        async def read(url: str) -> bytes | None:
            client = MultiplexedRedis(url)
            try:
                return await client.get("k")
            finally:
                await client.aclose()

        assert asyncio.run(read(f"{base}/3")) == b"in db 3"
        assert asyncio.run(read(f"{base}/0")) is None
        with pytest.raises(redis.AuthenticationError, match="credentials"):
            asyncio.run(read(url.replace("redis://", "redis://:wrong@")))
        with pytest.raises(redis.AuthenticationError):
            asyncio.run(read(url))  # no password at all: refused at the first read
    # A ConnectionError, so the service fails open on it like on a server that is down.
    assert issubclass(redis.AuthenticationError, redis.ConnectionError)


def test_urls_it_cannot_honour_are_refused_or_go_to_redis_py() -> None:
    with pytest.raises(ValueError, match="socket_timeout"):
        MultiplexedRedis("redis://redis.example:6379/0?socket_timeout=1")
    with pytest.raises(ValueError, match="TLS"):
        MultiplexedRedis("rediss://redis.example:6379/0")
    assert isinstance(connect_async("rediss://redis.example:6379/0"), redis.asyncio.Redis)
    assert isinstance(connect_async("redis://redis.example:6379/0"), MultiplexedRedis)


def test_reads_given_up_during_a_stall_leave_later_reads_in_step(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (proc, url):
        with redis.Redis.from_url(url) as admin:
            admin.mset({"a": b"A", "b": b"B", "c": b"C"})

        async def run() -> list:
            client = MultiplexedRedis(url)
            try:
                assert await client.get("a") == b"A"
                proc.send_signal(signal.SIGSTOP)
                try:
                    for key in ("a", "b"):  # their replies arrive after their callers left
                        with pytest.raises(TimeoutError):
                            async with asyncio.timeout(0.05):
                                await client.get(key)
                finally:
                    proc.send_signal(signal.SIGCONT)
                return [await client.get(k) for k in ("c", "b", "a", "nope")]
            finally:
                await client.aclose()

        assert asyncio.run(run()) == [b"C", b"B", b"A", None]


def test_a_server_that_answers_nothing_is_dropped_once_reads_pile_up(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (proc, url):
        with redis.Redis.from_url(url) as admin:
            admin.set("k", b"v")

        async def run() -> tuple[bytes | None, int]:
            client = MultiplexedRedis(url, max_pending=3)
            try:
                await client.get("k")
                proc.send_signal(signal.SIGSTOP)
                try:
                    for _ in range(5):
                        with pytest.raises(TimeoutError):
                            async with asyncio.timeout(0.05):
                                await client.get("k")
                finally:
                    proc.send_signal(signal.SIGCONT)
                value = await client.get("k")
                return value, await asyncio.to_thread(reader_connections, url)
            finally:
                await client.aclose()

        value, connections = asyncio.run(run())
    assert value == b"v"
    assert connections == 1  # the stalled connection was closed, not kept beside the new one


def test_a_lost_server_fails_reads_then_is_reconnected_when_back(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (proc, url):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        client = MultiplexedRedis(url, connect_timeout_s=2.0)

        async def read() -> bytes | None:
            return await client.get("k")

        async def scenario() -> bytes | None:
            assert await read() is None
            proc.kill()
            await asyncio.to_thread(proc.wait)
            with pytest.raises(redis.ConnectionError):
                await read()  # the open connection is gone
            with pytest.raises(redis.ConnectionError, match="cannot connect"):
                await read()  # and nothing listens
            with private_redis(tmp_path, port=port) as (_, again):
                with redis.Redis.from_url(again) as admin:
                    admin.set("k", b"back")
                value = await read()
            await client.aclose()
            return value

        assert asyncio.run(scenario()) == b"back"
