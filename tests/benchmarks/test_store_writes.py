"""Benchmark: prediction-store writes vs `redis-benchmark` pipelined SET on the same servers.

Both write 120-byte values under 200k keys to private redis-servers on free ports, first one
server, then a 3-node Redis Cluster (`redis-benchmark --cluster`): redis-benchmark with its
default 50 clients and 64 commands per pipeline (its single-client figure is printed too), the
store with one connection per node, as the batch job does. redis-benchmark's `-t set` sets no
TTL; its figure for `SET key value EX ttl`, the command the store sends, is printed as well.
Run with::

    pytest -m benchmark tests/benchmarks/test_store_writes.py -s
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from redis.cluster import RedisCluster

from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import private_cluster, private_redis

pytestmark = pytest.mark.benchmark

USERS = 200_000
BATCH = 10_000
# redis-benchmark's figures come in steps of its clock in cluster mode (200k SETs came out as
# 200000 / 0.251 s and 200000 / 0.502 s): a million requests make a step under 5%.
REFERENCE_REQUESTS = 1_000_000
ROUNDS = 2
TTL_S = 3 * 24 * 3600


def redis_benchmark_rps(
    binary: str, url: str, clients: int, *, cluster: bool, with_ttl: bool = False
) -> float:
    where = urlsplit(url)
    # In cluster mode redis-benchmark puts each node's hash tag where a key says {tag}.
    key = "{tag}key:__rand_int__" if cluster else "key:__rand_int__"
    command = ["SET", key, "v" * 120, "EX", str(TTL_S)] if with_ttl else []
    out = subprocess.run(
        [binary, "-h", where.hostname, "-p", str(where.port), "-n", str(REFERENCE_REQUESTS),
         "-P", "64", "-r", str(USERS), "-c", str(clients), "--csv",
         *(["--cluster"] if cluster else []), *(command or ["-t", "set", "-d", "120"])],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    header, row = [row for row in csv.reader(io.StringIO(out)) if row][-2:]
    return float(row[header.index("rps")])


def store_rps(store: PredictionStore, codes: np.ndarray, users: list[str], run_id: str) -> float:
    writer = store.begin_run(run_id, codebook_version="cb", model_version="m")
    started = time.perf_counter()
    for start in range(0, USERS, BATCH):
        writer.write_batch(users[start : start + BATCH], codes[start : start + BATCH])
    elapsed = time.perf_counter() - started
    writer.publish()
    return USERS / elapsed


@contextlib.contextmanager
def servers(kind: str, directory: Path) -> Iterator[str]:
    if kind == "cluster":
        with private_cluster(directory) as url:
            yield url
    else:
        with private_redis(directory) as (_, url):
            yield url


def flush(store: PredictionStore) -> None:
    client = store.client
    if isinstance(client, RedisCluster):
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.flushall()


@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_store_writes_vs_redis_benchmark(kind: str, tmp_path: Path) -> None:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        pytest.skip("redis-benchmark not found (apt-get install -y redis-tools)")
    codes = np.random.default_rng(0).integers(0, 8192, size=(USERS, 20, 3), dtype=np.uint16)
    users = [f"user-{i:07d}" for i in range(USERS)]
    cluster = kind == "cluster"
    with servers(kind, tmp_path) as url:
        store = PredictionStore(connect(url, cluster=cluster, timeout_s=30))
        ours, ref, ref_single, ref_ttl = [], [], [], []
        for i in range(ROUNDS):  # interleaved, best of each: the machine is shared and noisy
            flush(store)
            ref.append(redis_benchmark_rps(binary, url, 50, cluster=cluster))
            ref_single.append(redis_benchmark_rps(binary, url, 1, cluster=cluster))
            ref_ttl.append(redis_benchmark_rps(binary, url, 50, cluster=cluster, with_ttl=True))
            flush(store)
            ours.append(store_rps(store, codes, users, f"r{i}"))
        assert store.get(users[-1]).version == f"r{ROUNDS - 1}"
    name = "" if kind == "single" else "cluster_"
    print(
        f"\n{kind}: {USERS} users x 120 bytes, batches of {BATCH}, best of {ROUNDS}"
        f"\n{name}redis_benchmark_set_rps: {max(ref):.0f} (50 clients, -P 64, -d 120)"
        f"\n{name}redis_benchmark_set_rps_single_client: {max(ref_single):.0f}"
        f"\n{name}redis_benchmark_set_ex_rps: {max(ref_ttl):.0f} (SET with EX, 50 clients)"
        f"\n{name}store_write_rps: {max(ours):.0f}"
        f"\n{name}store_vs_redis_benchmark_ratio: {max(ours) / max(ref):.2f}"
        f"\n{name}store_vs_single_client_redis_benchmark_ratio: {max(ours) / max(ref_single):.2f}"
        f"\n{name}store_vs_redis_benchmark_set_ex_ratio: {max(ours) / max(ref_ttl):.2f}"
    )
    assert max(ours) > 0
