"""The batch job's textfile: a failed run records its failure without erasing the last success
(the stale-batch alert reads it), and the file is written even when the run raises."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conrec.batch_gen.config import NightlyConfig
from conrec.batch_gen.job import BatchJobConfig
from conrec.batch_gen.metrics import LAST_SUCCESS, RunMetrics
from conrec.batch_gen.nightly import run_nightly
from conrec.codebook.artifact import ArtifactError
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import isolated_prefix


def samples(path: Path) -> dict[str, float]:
    text = path.read_text()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture
def store(redis_url: str) -> Iterator[PredictionStore]:
    with isolated_prefix(redis_url) as prefix:
        yield PredictionStore(connect(redis_url), prefix=prefix, pointer_cache_s=0.0)


def test_a_failed_run_keeps_the_previous_last_success(tmp_path: Path) -> None:
    path = tmp_path / "batch.prom"
    good = RunMetrics()
    good.mark_published()
    good.finish(path, succeeded=True)
    good.write(path)
    first = samples(path)
    assert first["conrec_batch_last_run_success"] == 1
    assert first[LAST_SUCCESS] == pytest.approx(time.time(), abs=60)

    time.sleep(0.01)
    bad = RunMetrics()
    bad.failures.inc(3)
    bad.finish(path, succeeded=False)
    bad.write(path)
    second = samples(path)
    assert second["conrec_batch_last_run_success"] == 0
    assert second["conrec_batch_failed_users_total"] == 3
    assert second[LAST_SUCCESS] == first[LAST_SUCCESS]
    assert second["conrec_batch_last_run_timestamp_seconds"] > first[LAST_SUCCESS]


def test_without_a_previous_file_the_published_run_dates_the_last_success(
    tmp_path: Path, store: PredictionStore
) -> None:
    empty = tmp_path / "empty.prom"
    metrics = RunMetrics()
    metrics.finish(empty, succeeded=False, store=store)
    metrics.write(empty)
    assert LAST_SUCCESS not in samples(empty)  # never a 0: the series is left out

    store.begin_run("earlier", codebook_version="v", model_version="m").publish(user_count=0)
    path = tmp_path / "batch.prom"
    metrics = RunMetrics()
    metrics.finish(path, succeeded=False, store=store)
    metrics.write(path)
    assert samples(path)[LAST_SUCCESS] == store.current_run().created_at


def test_a_run_that_raises_still_writes_its_failure(tmp_path: Path, store: PredictionStore) -> None:
    path = tmp_path / "batch.prom"
    cfg = NightlyConfig(
        model_dir=str(tmp_path / "model"),
        codebook_dir=str(tmp_path / "no-codebook-here"),
        job=BatchJobConfig(run_id="r1", checkpoint_dir=str(tmp_path / "ckpt")),
        metrics_file=str(path),
    )
    with pytest.raises(ArtifactError, match="no codebook artifact"):
        run_nightly(cfg, pd.DataFrame(), store=store)
    written = samples(path)
    assert written["conrec_batch_last_run_success"] == 0
    assert written["conrec_batch_last_run_timestamp_seconds"] == pytest.approx(time.time(), abs=60)


class _Gateway(http.server.BaseHTTPRequestHandler):
    """The Pushgateway's side of a push: PUT /metrics/job/<job> with the exposition body."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_push_replaces_the_jobs_group_on_a_gateway(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        metrics = RunMetrics()
        metrics.users.inc(5)
        metrics.finish(None, succeeded=True)
        metrics.push(f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    [(path, body)] = _Gateway.received
    assert path == "/metrics/job/conrec-batch"
    assert b"conrec_batch_users_written_total 5.0" in body
    assert b"conrec_batch_last_run_success 1.0" in body
