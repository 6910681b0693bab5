"""The prediction store on a real 3-node Redis Cluster: keys spread over every node, readers of
both kinds, publishing as one transaction on one slot, and a writer whose slot map went stale.

(Every test of test_runs.py runs on the cluster too, through the ``store`` fixture.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from conrec.store.connection import connect, connect_async
from conrec.store.reader import AsyncPredictionReader
from conrec.store.runs import PredictionStore
from tests.redis_support import keys_per_node, private_cluster

RNG = np.random.default_rng(1)
USERS = [f"user-{i}" for i in range(600)]


def write_run(store: PredictionStore, run_id: str, users: list[str]) -> np.ndarray:
    codes = RNG.integers(0, 8192, size=(len(users), 20, 3), dtype=np.uint16)
    writer = store.begin_run(run_id, codebook_version="cb", model_version="m")
    for start in range(0, len(users), 250):
        writer.write_batch(users[start : start + 250], codes[start : start + 250])
    writer.publish()
    return codes


def test_a_run_spreads_over_every_node_and_both_readers_read_it_back(
    cluster_store: PredictionStore, redis_cluster_url: str
) -> None:
    codes = write_run(cluster_store, "r1", USERS)
    spread = keys_per_node(cluster_store.client, f"{cluster_store.keys.user_prefix('r1')}*")
    assert len(spread) == 3
    assert sum(spread.values()) == len(USERS)
    assert min(spread.values()) > len(USERS) / 6  # hash tags by user: roughly a third each

    got = cluster_store.get_many(USERS)
    assert [p.version for p in got] == ["r1"] * len(USERS)
    assert all(np.array_equal(p.codes, c) for p, c in zip(got, codes, strict=True))

    async def read_all() -> list:
        client = connect_async(redis_cluster_url, cluster=True, timeout_s=5.0)
        reader = AsyncPredictionReader(client, prefix=cluster_store.keys.prefix)
        # 50 reads in flight at a time from the start, as concurrent requests would have them
        # (redis-py's cluster client fails reads that overlap its discovery of the nodes).
        try:
            groups = [USERS[i : i + 50] for i in range(0, len(USERS), 50)]
            return [p for g in groups for p in await asyncio.gather(*map(reader.get, g))]
        finally:
            await client.aclose()

    read = asyncio.run(read_all())
    assert all(np.array_equal(p.codes, c) for p, c in zip(read, codes, strict=True))
    assert {p.version for p in read} == {"r1"}


def test_publish_is_one_multi_exec_on_the_run_level_slot(cluster_store: PredictionStore) -> None:
    keys, client = cluster_store.keys, cluster_store.client
    slots = {client.keyslot(k) for k in (keys.pointer, keys.run("r1"), keys.runs)}
    assert len(slots) == 1
    node = client.get_redis_connection(client.get_node_from_key(keys.pointer))
    writer = cluster_store.begin_run("r1", codebook_version="cb", model_version="m")
    writer.write_batch(["u"], RNG.integers(0, 8192, size=(1, 20, 3), dtype=np.uint16))
    seen: list[str] = []
    with node.monitor() as monitor:
        publisher = threading.Thread(target=writer.publish)
        publisher.start()
        for event in monitor.listen():
            command = event["command"]
            if keys.prefix in command or command in ("MULTI", "EXEC"):
                seen.append(command.split(" ")[0])
            if command == "EXEC":
                break
        publisher.join()
    # The previous runs' record is read first; then every write sits inside one transaction.
    assert seen[seen.index("MULTI") :] == ["MULTI", "SET", "ZADD", "SET", "EXEC"]
    assert cluster_store.current_run().run_id == "r1"


def test_a_stale_slot_map_falls_back_to_the_cluster_pipeline(tmp_path: Path) -> None:
    """A slot moves to another node after the writer read the map: the node it writes to
    answers MOVED, and the batch is written again through redirects, all of it readable."""
    with private_cluster(tmp_path) as url:
        store = PredictionStore(connect(url, cluster=True, timeout_s=5.0), pointer_cache_s=0.0)
        writer = store.begin_run("r1", codebook_version="cb", model_version="m")
        before = RNG.integers(0, 8192, size=(3, 20, 3), dtype=np.uint16)
        writer.write_batch(["a", "b", "c"], before)  # the writer has read the slot map now

        slot = key_slot(b"moved-user")
        owner = store.client.get_node_from_key(store.keys.user("r1", "moved-user"))
        target = next(n for n in store.client.get_primaries() if n.name != owner.name)
        move_empty_slot(store.client, slot, owner.name, target.name)
        moved_key = store.keys.user("r1", "moved-user")
        assert store.client.get_node_from_key(moved_key).name == owner.name  # the stale map

        users = ["moved-user", *(f"u{i}" for i in range(300))]
        codes = RNG.integers(0, 8192, size=(len(users), 20, 3), dtype=np.uint16)
        writer.write_batch(users, codes)
        writer.publish()

        fresh = PredictionStore(connect(url, cluster=True), pointer_cache_s=0.0)
        got = fresh.get_many(["a", "b", "c", *users])
        expected = np.concatenate([before, codes])
        assert all(np.array_equal(p.codes, c) for p, c in zip(got, expected, strict=True))
        assert fresh.client.get_node_from_key(moved_key).name == target.name


def move_empty_slot(client: RedisCluster, slot: int, source: str, target: str) -> None:
    """Hand ``slot`` (no keys in it) from node ``source`` to ``target`` as a resharding
    would, then wait until every node agrees."""
    nodes = {node.name: client.get_redis_connection(node) for node in client.get_primaries()}
    ids = {name: node.execute_command("CLUSTER MYID").decode() for name, node in nodes.items()}
    nodes[target].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
    nodes[source].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
    for name in (target, source, *(n for n in nodes if n not in (source, target))):
        nodes[name].execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])
    for node in nodes.values():
        for attempt in range(400):
            if owner_of(node, slot) == ids[target]:
                break
            if attempt % 20 == 19:
                # A node was once seen keeping the old owner for over 10 s on a loaded machine:
                # say it again, as resharding tools do.
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])
            time.sleep(0.05)
        else:
            raise AssertionError(f"slot {slot} did not move")


def owner_of(node: redis.Redis, slot: int) -> str | None:
    for first, last, primary, *_ in node.execute_command("CLUSTER SLOTS"):
        if first <= slot <= last:
            return primary[2].decode()
    return None
