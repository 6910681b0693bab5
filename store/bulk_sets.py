"""Pipelined ``SET key value EX ttl`` for many keys: the batch writer's hot path.

redis-py's pipelines pack every command and parse every reply through several Python calls:
they wrote ~126k SET/s to one node and ~63k SET/s to a 3-node cluster here, where one RESP
format per command, sent in chunks on the same redis-py connections, writes several times that
(``tests/benchmarks/test_store_writes.py``). So this module packs the RESP itself, sends it with
the connections' ``send_packed_command`` and reads the replies with their ``read_response``.

On a Redis Cluster it groups the keys by the node that owns their slot, from the cluster
client's slot map, and keeps a chunk in flight on every node at once. When that map is stale (a
resharding or a failover: MOVED, ASK, a node gone), the whole batch is written again through the
cluster client's pipeline, which follows the redirects and refreshes the map; SETs are
idempotent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import AskError, ClusterDownError, SlotNotCoveredError, TryAgainError

# Commands per round trip and node; large enough to amortise the round trip, small enough that
# the replies of one chunk are read while the server works on the next.
CHUNK = 500

# What a stale slot map looks like to the fast path (MovedError is an AskError).
_TOPOLOGY_CHANGED = (
    AskError,
    TryAgainError,
    ClusterDownError,
    SlotNotCoveredError,
    redis.ConnectionError,
    redis.TimeoutError,
)


class WriteRefused(redis.ResponseError):
    """Redis answered a SET with an error (out of memory, read-only replica, ...)."""


class BulkSetter:
    """Writes batches of same-size values with a TTL through one client (server or cluster)."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client
        # Cluster only: the primaries, and the index into them of each slot's owner; replaced
        # whole, so a batch never pairs one map's nodes with another's owners.
        self._slot_map: tuple[list[ClusterNode], np.ndarray] | None = None

    def set_many(self, keys: Sequence[bytes], values: bytes, ttl_s: int) -> None:
        """``SET keys[i] <i-th value> EX ttl_s`` for every key, where ``values`` holds the
        values back to back, all of one size. Raises ``WriteRefused`` if Redis refuses one."""
        if not keys:
            return
        size, rest = divmod(len(values), len(keys))
        if rest:
            raise ValueError(f"{len(values)} value bytes do not split into {len(keys)} values")
        batch = _Batch(keys, values, size, ttl_s)
        client = self.client
        if not isinstance(client, RedisCluster):
            batch.send([(client, range(len(keys)))])
            return
        try:
            batch.send(self._by_node(keys))
        except _TOPOLOGY_CHANGED:
            self._slot_map = None  # re-read the map the pipeline refreshes
            batch.send_through_pipeline(client)

    def _by_node(self, keys: Sequence[bytes]) -> list[tuple[redis.Redis, list[int]]]:
        """The keys' indices grouped by the primary that owns their slot, with its client."""
        if self._slot_map is None:
            self._slot_map = self._read_slot_map()
        nodes, owner = self._slot_map
        slots = np.fromiter(map(key_slot, keys), dtype=np.int64, count=len(keys))
        owners = owner[slots]
        order = np.argsort(owners, kind="stable")
        bounds = np.cumsum(np.bincount(owners, minlength=len(nodes)))[:-1]
        return [
            (self.client.get_redis_connection(node), part.tolist())
            for node, part in zip(nodes, np.split(order, bounds), strict=True)
            if len(part)
        ]

    def _read_slot_map(self) -> tuple[list[ClusterNode], np.ndarray]:
        # One table lookup per key rather than a get_node_from_slot call (a lock and a
        # deprecation wrapper) per key.
        manager = self.client.nodes_manager
        nodes: list[ClusterNode] = []
        index: dict[str, int] = {}
        owner = np.empty(REDIS_CLUSTER_HASH_SLOTS, dtype=np.int64)
        for slot in range(REDIS_CLUSTER_HASH_SLOTS):
            node = manager.get_node_from_slot(slot)
            if node.name not in index:
                index[node.name] = len(nodes)
                nodes.append(node)
            owner[slot] = index[node.name]
        return nodes, owner


class _Batch:
    def __init__(self, keys: Sequence[bytes], values: bytes, size: int, ttl_s: int) -> None:
        self.keys, self.values, self.size, self.ttl_s = keys, values, size, ttl_s
        ttl = str(ttl_s).encode()
        self._value_head = b"\r\n$%d\r\n" % size
        self._tail = b"\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(ttl), ttl)

    def send(self, streams: list[tuple[redis.Redis, Sequence[int]]]) -> None:
        """The SETs of each (node, indices) stream on one connection of that node; every node
        has a chunk in flight while the previous chunk's replies are read."""
        with contextlib.ExitStack() as held:
            conns = []
            for node, _ in streams:
                pool = node.connection_pool
                conns.append(pool.get_connection())
                held.callback(pool.release, conns[-1])
            try:
                pending = [0] * len(streams)
                for start in range(0, max(len(indices) for _, indices in streams), CHUNK):
                    for i, (conn, (_, indices)) in enumerate(zip(conns, streams, strict=True)):
                        part = indices[start : start + CHUNK]
                        if part:
                            conn.send_packed_command([self._pack(part)])
                        _read_ok(conn, pending[i])
                        pending[i] = len(part)
                for conn, count in zip(conns, pending, strict=True):
                    _read_ok(conn, count)
            except BaseException:
                for conn in conns:
                    conn.disconnect()  # replies may be left unread: never reuse these
                raise

    def _pack(self, indices: Sequence[int]) -> bytes:
        """RESP for ``SET <key> <value> EX <ttl>`` per index: one format per command is what
        lets a single Python writer keep pace with Redis."""
        keys, values, size = self.keys, self.values, self.size
        head, tail = self._value_head, self._tail
        return b"".join(
            [
                b"*5\r\n$3\r\nSET\r\n$%d\r\n%s%s%s%s"
                % (len(keys[i]), keys[i], head, values[i * size : (i + 1) * size], tail)
                for i in indices
            ]
        )

    def send_through_pipeline(self, client: RedisCluster) -> None:
        pipe = client.pipeline(transaction=False)
        for i, key in enumerate(self.keys):
            pipe.set(key, self.values[i * self.size : (i + 1) * self.size], ex=self.ttl_s)
        try:
            pipe.execute()
        except redis.ResponseError as exc:
            raise WriteRefused(str(exc)) from exc


def _read_ok(conn: redis.connection.AbstractConnection, count: int) -> None:
    for _ in range(count):
        try:
            conn.read_response()
        except redis.ResponseError as exc:
            if isinstance(exc, _TOPOLOGY_CHANGED):
                raise
            raise WriteRefused(str(exc)) from exc
