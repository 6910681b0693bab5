"""Benchmark: prediction-store writes vs `redis-benchmark` pipelined SET on the same server.

Both write 120-byte values to a private redis-server on a free port: redis-benchmark with its
default 50 clients and 64 commands per pipeline (its single-client figure is printed too), the
store with one connection, as the batch job does. Run with::

    pytest -m benchmark tests/benchmarks/test_store_writes.py -s
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from batch_gen.store import PredictionStore, connect
from tests.redis_support import private_redis

pytestmark = pytest.mark.benchmark

USERS = 200_000
BATCH = 10_000
ROUNDS = 2


def redis_benchmark_rps(binary: str, url_port: int, clients: int) -> float:
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(url_port), "-t", "set", "-n", str(USERS),
         "-P", "64", "-d", "120", "-r", str(USERS), "-c", str(clients), "--csv"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    rows = list(csv.reader(io.StringIO(out)))
    return float(next(row for row in rows if row[0] == "SET")[1])


def store_rps(store: PredictionStore, codes: np.ndarray, users: list[str], run_id: str) -> float:
    writer = store.begin_run(run_id, codebook_version="cb", model_version="m")
    started = time.perf_counter()
    for start in range(0, USERS, BATCH):
        writer.write_batch(users[start : start + BATCH], codes[start : start + BATCH])
    elapsed = time.perf_counter() - started
    writer.publish()
    return USERS / elapsed


def test_store_writes_vs_redis_benchmark(tmp_path: Path) -> None:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        pytest.skip("redis-benchmark not found (apt-get install -y redis-tools)")
    codes = np.random.default_rng(0).integers(0, 8192, size=(USERS, 20, 3), dtype=np.uint16)
    users = [f"user-{i:07d}" for i in range(USERS)]
    with private_redis(tmp_path) as (_, url):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        client = connect(url, timeout_s=30)
        store = PredictionStore(client)
        ours, ref, ref_single = [], [], []
        for i in range(ROUNDS):  # interleaved, best of each: the machine is shared and noisy
            client.flushall()
            ref.append(redis_benchmark_rps(binary, port, clients=50))
            ref_single.append(redis_benchmark_rps(binary, port, clients=1))
            client.flushall()
            ours.append(store_rps(store, codes, users, f"r{i}"))
        assert store.get(users[-1]).version == f"r{ROUNDS - 1}"
    print(
        f"\n{USERS} users x 120 bytes, batches of {BATCH}, best of {ROUNDS}"
        f"\nredis_benchmark_set_rps: {max(ref):.0f} (50 clients, -P 64, -d 120)"
        f"\nredis_benchmark_set_rps_single_client: {max(ref_single):.0f}"
        f"\nstore_write_rps: {max(ours):.0f}"
        f"\nstore_vs_redis_benchmark_ratio: {max(ours) / max(ref):.2f}"
        f"\nstore_vs_single_client_redis_benchmark_ratio: {max(ours) / max(ref_single):.2f}"
    )
    assert max(ours) > 0
