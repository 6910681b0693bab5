"""The service's reads from one Redis server, multiplexed on one connection (auto-pipelining).

/filter reads one key per request, with many requests in flight. redis-py's asyncio client takes
a pooled connection per command and runs its retry and response machinery around each. Here
every GET goes down a single connection, and each reply resolves the oldest waiting GET (Redis
answers a connection's commands in order): three to five times fewer CPU seconds per GET, and
half of redis-server's (tests/benchmarks/test_redis_reads.py, docs/benchmarks.md). hiredis
parses the replies, as in redis-py.

The GETs issued while the event loop runs one round of callbacks (requests being served side by
side) go out in one write, after that round: Redis then reads them in one go and answers them
in one write, so a busy service pays the server's system calls and wake-ups once per round
rather than once per GET (ioredis's auto-pipelining works the same way).

Only GET is spoken, plus AUTH and SELECT when a connection opens: the read path of a single
server over TCP or a unix socket. A Redis Cluster and TLS (``rediss://``) keep redis-py's
clients (see ``conrec.store.connection.connect_async``).

Callers bound each read (the service wraps every read in ``asyncio.timeout``). A read given up
leaves its reply to be dropped on arrival, so later replies still meet their own GETs; a server
that answers nothing while ``max_pending`` reads pile up gets the connection closed, and the next
read opens a new one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import hiredis
import redis
from redis.connection import parse_url

# parse_url's keys this client honours; any other URL option is refused, not ignored.
_SUPPORTED = {"host", "port", "path", "db", "username", "password", "connection_class"}


def pack(*args: bytes) -> bytes:
    """One RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    """One connection: commands written in order, replies matched to them in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future] = deque()
        # Commands not yet written: they go out together once the loop's current round is done.
        self.unsent: list[bytes] = []
        self.reader = hiredis.Reader(replyError=redis.ResponseError)
        self.lost: redis.ConnectionError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, command: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append(future)
        if not self.unsent:
            loop.call_soon(self.flush)
        self.unsent.append(command)
        return future

    def flush(self) -> None:
        unsent, self.unsent = self.unsent, []
        if self.lost is None:
            self.transport.write(b"".join(unsent))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future = self.waiting.popleft()
                if future.done():  # given up by its caller
                    continue
                if isinstance(reply, redis.ResponseError):
                    future.set_exception(_error(reply))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.fail(redis.ConnectionError(f"unreadable reply from Redis: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection to Redis lost: {exc}" if exc else "Redis closed the connection"
        self.fail(redis.ConnectionError(reason))

    def fail(self, error: redis.ConnectionError) -> None:
        """Fail every waiting command and close: no later reply could be trusted to meet its
        own command."""
        if self.lost is None:
            self.lost = error
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class MultiplexedRedis:
    """GETs from one Redis server on one connection, opened on first use and reopened after it
    is lost. ``connect_timeout_s`` bounds opening it (AUTH and SELECT included)."""

    def __init__(
        self, url: str, *, connect_timeout_s: float | None = None, max_pending: int = 10_000
    ) -> None:
        options: dict[str, Any] = parse_url(url)
        unsupported = sorted(set(options) - _SUPPORTED)
        tls = issubclass(options.get("connection_class", redis.Connection), redis.SSLConnection)
        if unsupported or tls:
            raise ValueError(
                "reads from one server take a redis:// or unix:// URL with no query options "
                f"(each read is bounded by its caller); got {', '.join(unsupported) or 'TLS'}"
            )
        self.options = options
        self.connect_timeout_s = connect_timeout_s
        self.max_pending = max_pending
        self._connection: _Connection | None = None
        self._opening = asyncio.Lock()

    @property
    def where(self) -> str:
        return self.options.get("path") or f"{self.options['host']}:{self.options['port']}"

    async def get(self, key: str) -> bytes | None:
        connection = self._connection
        if connection is None or connection.lost is not None:
            connection = await self._open()
        elif len(connection.waiting) >= self.max_pending:
            connection.fail(redis.ConnectionError(f"Redis left {self.max_pending} reads waiting"))
            connection = await self._open()
        encoded = key.encode()
        return await connection.send(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(encoded), encoded))

    async def aclose(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None

    async def _open(self) -> _Connection:
        async with self._opening:  # concurrent first reads share one connection
            if self._connection is not None and self._connection.lost is None:
                return self._connection
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    connection = await self._connect()
                    await self._hello(connection)
            except TimeoutError as exc:
                raise redis.TimeoutError(
                    f"connecting to Redis at {self.where} took over {self.connect_timeout_s} s"
                ) from exc
            except OSError as exc:
                raise redis.ConnectionError(
                    f"cannot connect to Redis at {self.where}: {exc}"
                ) from exc
            self._connection = connection
            return connection

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self.options.get("path"):
            _, connection = await loop.create_unix_connection(_Connection, self.options["path"])
        else:
            _, connection = await loop.create_connection(
                _Connection, self.options["host"], self.options["port"]
            )
        return connection

    async def _hello(self, connection: _Connection) -> None:
        """AUTH and SELECT, as the URL asks; the connection is closed if either fails."""
        options = self.options
        try:
            if options.get("password"):
                user = [options["username"].encode()] if options.get("username") else []
                try:
                    await connection.send(pack(b"AUTH", *user, options["password"].encode()))
                except redis.ResponseError as exc:
                    refused = f"Redis refused the credentials: {exc}"
                    raise redis.AuthenticationError(refused) from exc
            if options.get("db"):
                try:
                    await connection.send(pack(b"SELECT", str(options["db"]).encode()))
                except redis.ResponseError as exc:
                    raise redis.ConnectionError(f"Redis refused db {options['db']}: {exc}") from exc
        except BaseException:
            connection.fail(redis.ConnectionError("the connection's setup failed"))
            raise


def _error(reply: redis.ResponseError) -> redis.RedisError:
    # As redis-py: a server that wants a password is a connection problem, not a bad command.
    if str(reply).startswith("NOAUTH"):
        return redis.AuthenticationError(str(reply))
    return reply
