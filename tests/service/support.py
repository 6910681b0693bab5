"""Helpers shared by the service, store, reliability and benchmark tests: a synthetic codebook
whose cosines are easy to compute by hand, run publishing, and `conrec serve` as a process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

from conrec.codebook.artifact import EncoderWeights, save_artifact
from conrec.store.runs import PredictionStore
from tests.redis_support import free_port

# A thresholds file enforcing 0.9 everywhere: without one the service runs in shadow mode.
ENFORCE = "version: test-enforce\ndefault: 0.9\nmode: enforce\n"


def enforcing_thresholds(folder: Path) -> Path:
    path = folder / "enforce.yaml"
    path.write_text(ENFORCE)
    return path


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


def publish_run(
    store: PredictionStore, run_id: str, codebook_version: str, users: dict[str, list]
) -> None:
    """Write and publish a run of hand-made predictions (each user: a list of K SIDs)."""
    k = len(next(iter(users.values())))
    writer = store.begin_run(run_id, codebook_version=codebook_version, model_version="m1", k=k)
    writer.write_batch(list(users), np.array(list(users.values()), dtype=np.uint16))
    writer.publish()


@dataclass
class ServiceProcess:
    proc: subprocess.Popen
    url: str

    @property
    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20


@contextlib.contextmanager
def service_process(
    env: dict[str, str], log: Path, *, without: Sequence[str] = ()
) -> Iterator[ServiceProcess]:
    """`conrec serve` on a free port with `env` (CONREC_* settings), ready when yielded; the
    packages named in ``without`` cannot be imported in it, as in an image that lacks them."""
    port = free_port()
    # None in sys.modules makes an import of that name raise ModuleNotFoundError.
    hide = f"import sys; sys.modules.update(dict.fromkeys({list(without)!r}))"
    launch = f"{hide}; from conrec.cli.main import app; app(prog_name='conrec')"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", launch, "serve", "--port", str(port)],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"conrec serve did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield ServiceProcess(proc, url)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` as operators should (a temporary file renamed over it): a hot-reloading
    reader sees the old content or the new, never a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_until(condition, timeout_s: float, interval_s: float = 0.05) -> float:
    """Seconds until `condition()` held; raises TimeoutError after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)
    return time.monotonic() - start


def scraped(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` in a /metrics exposition."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} not exported")
