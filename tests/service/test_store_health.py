"""Which store the service reads, said at start-up; its reachability and the published run's age
kept current by the service itself, not by the requests that happen to arrive."""

from __future__ import annotations

import logging
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from typer.testing import CliRunner

from conrec.cli.main import app
from conrec.service.core.config import Settings
from conrec.service.core.state import redacted
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import free_port, redis_binary, wait_for
from tests.service.support import publish_run, service_process, wait_until


def gauge(api: httpx.Client, name: str) -> float:
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not exported")


def test_no_redis_url_refuses_to_start_unless_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONREC_REDIS_URL", raising=False)
    monkeypatch.setenv("CONREC_REDIS_URL", "  ")  # what compose passes for an unset variable
    with pytest.raises(ValidationError, match="no Redis configured: set CONREC_REDIS_URL"):
        Settings()
    assert Settings(embedded=True).redis_url is None
    with pytest.raises(ValidationError, match="exclude each other"):
        Settings(embedded=True, redis_url="redis://redis.example:6379/0")


def test_conrec_serve_without_a_store_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A misspelt variable is the case this guards: the right one is simply not there.
    monkeypatch.delenv("CONREC_REDIS_URL", raising=False)
    monkeypatch.setenv("CONREC_REDIS_ULR", "redis://redis.example:6379/0")
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "no Redis configured" in result.output
    assert "--embedded" in result.output


def test_a_redis_url_the_reader_cannot_honour_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONREC_REDIS_URL", "redis://:s3cret@redis.example:6379/0?socket_timeout=1")
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "CONREC_REDIS_URL" in result.output
    assert "socket_timeout" in result.output
    assert "s3cret" not in result.output


def test_redacted_hides_only_the_password() -> None:
    assert redacted("redis://:s3cret@redis.example:6380/2") == "redis://:***@redis.example:6380/2"
    assert redacted("rediss://app:pw@r:6379/0") == "rediss://app:***@r:6379/0"
    assert redacted("redis://redis.example:6379/0") == "redis://redis.example:6379/0"


def test_unreachable_store_is_logged_at_start_and_recovers(
    server: Callable[..., httpx.Client],
    tmp_path: Path,
    codebook_version: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens here yet
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    caplog.set_level(logging.INFO, logger="conrec.service.core.state")
    api = server(redis_url=url, store_prefix="health", thresholds_reload_s=0.05)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "logged once, not on every poll"
    assert f"127.0.0.1:{port}" in errors[0]
    assert "unreachable" in errors[0]
    assert gauge(api, "conrec_store_up") == 0
    assert math.isinf(gauge(api, "conrec_prediction_age_seconds"))
    status = api.get("/readyz").json()["store"]
    assert status["up"] is False
    assert status["url"] == f"redis://:***@127.0.0.1:{port}/0"
    assert status["error"]

    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret",
         "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(url, proc)
        store = PredictionStore(connect(url), prefix="health")
        publish_run(store, "r1", codebook_version, {"u": [(1, 0, 0)]})
        wait_until(lambda: gauge(api, "conrec_prediction_published_timestamp_seconds") > 0, 10)
        assert gauge(api, "conrec_store_up") == 1
        created = gauge(api, "conrec_prediction_published_timestamp_seconds")
        assert time.time() - 60 < created <= time.time()
        assert api.get("/readyz").json()["store"]["published_run"] == "r1"
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        assert not any("s3cret" in r.getMessage() for r in caplog.records)
    finally:
        proc.kill()
        proc.wait()

    # Redis gone and no traffic: the age still grows and the store reads as down.
    wait_until(lambda: gauge(api, "conrec_store_up") == 0, timeout_s=10)
    first = gauge(api, "conrec_prediction_age_seconds")
    time.sleep(0.2)
    assert gauge(api, "conrec_prediction_age_seconds") > first > 0
    assert gauge(api, "conrec_prediction_published_timestamp_seconds") == created


def test_conrec_serve_says_which_store_it_reads(
    artifact_dir: Path,
    redis_url: str,
    prefix: str,
    shared_store: PredictionStore,
    codebook_version: str,
    tmp_path: Path,
) -> None:
    publish_run(shared_store, "nightly-7", codebook_version, {"u": [(1, 0, 0)]})
    env = {
        "CONREC_CODEBOOK_DIR": str(artifact_dir),
        "CONREC_REDIS_URL": redis_url,
        "CONREC_STORE_PREFIX": prefix,
    }
    log = tmp_path / "serve.log"
    with service_process(env, log):
        pass
    lines = [line for line in log.read_text().splitlines() if "prediction store" in line]
    assert len(lines) == 1, log.read_text()
    for says in ("reachable", "published run nightly-7", "1 users"):
        assert says in lines[0]
