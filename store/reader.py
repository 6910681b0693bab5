"""The service's reader: the published run and users' predictions on an asyncio client."""

from __future__ import annotations

import asyncio

import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import RedisClusterException

from conrec.store.connection import AsyncStoreClient
from conrec.store.keys import DEFAULT_PREFIX, KeySchema
from conrec.store.pointer import PointerCache
from conrec.store.values import Prediction, RunMeta, to_prediction

# Erasures a reader reads one by one between two polls; past that it drops its whole cache.
_MAX_ERASURES_READ = 1_000


class AsyncPredictionReader:
    """``PredictionStore``'s reader on an asyncio client, for the service's event loop: a slow
    Redis then delays only the requests waiting on it, and no thread hop is paid per read."""

    def __init__(
        self,
        client: AsyncStoreClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        pointer_cache_s: float = 1.0,
        pointer_timeout_s: float | None = None,
    ) -> None:
        self.client = client
        self.keys = KeySchema(prefix)
        self._pointer = PointerCache(pointer_cache_s)
        self._pointer_timeout_s = pointer_timeout_s
        # redis-py's asyncio cluster client fails commands that run concurrently with its
        # lazy discovery of the cluster ("Connection closed by server"): discover once, first.
        self._discover = asyncio.Lock() if isinstance(client, AsyncRedisCluster) else None

    async def current_run(self) -> RunMeta | None:
        """The published run, re-read at most every ``pointer_cache_s`` seconds. Once it has
        been read, a re-read that fails (or takes longer than ``pointer_timeout_s``) keeps the
        run as last read until the next re-read is due: the pointer's node failing must not
        fail the reads of users whose keys live elsewhere (a Redis Cluster), nor the users a
        reader has cached."""
        fresh, meta = self._pointer.fresh()
        if fresh:
            return meta
        if not self._pointer.known:
            return await self.read_pointer()
        try:
            async with asyncio.timeout(self._pointer_timeout_s):
                return await self.read_pointer()
        except (TimeoutError, redis.RedisError, OSError):
            kept = self._pointer.keep()
            if kept is None:
                raise
            return kept

    async def read_pointer(self) -> RunMeta | None:
        """The published run, read from Redis now (errors raise)."""
        return self._pointer.store(await self._get(self.keys.pointer))

    async def get(self, user_id: str) -> Prediction | None:
        run = await self.current_run()
        return None if run is None else await self.read(run, user_id)

    async def read(self, run: RunMeta, user_id: str) -> Prediction | None:
        """The user's prediction in ``run`` (None: not in it)."""
        value = await self._get(self.keys.user(run.run_id, user_id))
        return None if value is None else to_prediction(run, value)

    async def forgotten(self, after: int | None) -> tuple[int, list[str] | None]:
        """How many erasures the log holds, and the users erased after the first ``after``
        (``after`` None: the log's count only, for a reader that has nothing cached). None
        instead of the users when they cannot all be known (a log entry expired, the log was
        reset, or too many to read): the reader should drop everything it cached."""
        raw = await self._get(self.keys.forgotten_count)
        count = int(raw) if raw is not None else 0
        if after is None or count == after:
            return count, []
        if count < after or count - after > _MAX_ERASURES_READ:
            return count, None
        values = await asyncio.gather(
            *(self._get(self.keys.forgotten(n)) for n in range(after + 1, count + 1))
        )
        if any(value is None for value in values):
            return count, None
        return count, [value.decode() for value in values]

    async def _get(self, key: str) -> bytes | None:
        try:
            if self._discover is not None:
                async with self._discover:
                    await self.client.initialize()  # a no-op once the cluster is known
                    self._discover = None
            return await self.client.get(key)
        except RedisClusterException as exc:
            # Not a RedisError (no cluster node reachable, a slot not served): callers fail
            # open on ConnectionError, as for a single server that is down.
            raise redis.ConnectionError(f"Redis Cluster: {exc}") from exc
