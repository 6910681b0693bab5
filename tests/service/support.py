"""Helpers shared by the service, store and benchmark tests: a synthetic codebook whose cosines
are easy to compute by hand, run publishing and private Redis servers."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import redis

from batch_gen.store import PredictionStore
from codebook.artifact import EncoderWeights, save_artifact

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"

# Level 0 picks a basis vector e0..e3; levels 1 and 2 add small, known offsets, so that
#   (0,0,0) = e0, (1,0,0) = e1, (0,1,0) = e0 + e1, (0,0,3) = e0 + 0.5 e1, (2,0,0) = e2.
E = np.eye(4, dtype=np.float32)
Z = np.zeros(4, dtype=np.float32)
CODEWORDS = np.stack(
    [
        np.stack([E[0], E[1], E[2], E[3]]),
        np.stack([Z, E[1], E[2], E[3]]),
        np.stack([Z, E[2], E[3], 0.5 * E[1]]),
    ]
)
ITEMS = {
    "e0": (0, 0, 0),
    "e1": (1, 0, 0),
    "e0+e1": (0, 1, 0),
    "e0+.5e1": (0, 0, 3),
    "e2": (2, 0, 0),
}


def build_artifact(out: Path) -> str:
    """Write the hand-made codebook and item table to ``out``; return the codebook version."""
    encoder = EncoderWeights((np.eye(4, dtype=np.float32),), (np.zeros(4, np.float32),))
    codes = np.array(list(ITEMS.values()), dtype=np.uint16)
    return save_artifact(out, CODEWORDS, encoder, list(ITEMS), codes, {"name": "hand-made"})


@contextlib.contextmanager
def isolated_prefix() -> Iterator[str]:
    """A key prefix of the caller's own on the shared server; its keys are deleted after."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    for pattern in (f"{name}:*", f"{{{name}}}:*"):
        keys = list(client.scan_iter(match=pattern, count=20_000))
        if keys:
            client.delete(*keys)


def publish_run(
    store: PredictionStore, run_id: str, codebook_version: str, users: dict[str, list]
) -> None:
    """Write and publish a run of hand-made predictions (each user: a list of K SIDs)."""
    k = len(next(iter(users.values())))
    writer = store.begin_run(run_id, codebook_version=codebook_version, model_version="m1", k=k)
    writer.write_batch(list(users), np.array(list(users.values()), dtype=np.uint16))
    writer.publish()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def private_redis(directory: Path, *extra: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A redis-server of the caller's own on a free port (never the shared one): (process, url)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if redis.Redis.from_url(url).ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield proc, url
    finally:
        proc.kill()
        proc.wait()
