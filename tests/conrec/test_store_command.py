"""`conrec store status|rollback|forget` against a real Redis server, a real Redis Cluster and an
embedded store file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conrec.cli.main import app
from conrec.store.connection import connect, stop_embedded
from conrec.store.runs import PredictionStore
from conrec.store.values import RunMeta
from tests.redis_support import isolated_prefix

runner = CliRunner()


def publish(store: PredictionStore, run_id: str, users: list[str]) -> RunMeta:
    writer = store.begin_run(run_id, codebook_version=f"cb-{run_id}", model_version="m@1")
    writer.write_batch(users, np.zeros((len(users), 20, 3), dtype=np.uint16))
    return writer.publish()


@pytest.fixture(params=["redis-server", "cluster"])
def target(request: pytest.FixtureRequest) -> Iterator[tuple[PredictionStore, list[str]]]:
    """A store with runs r1 (3 users) and r2 (2 users, published), and the CLI options that
    name it."""
    cluster = request.param == "cluster"
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    with isolated_prefix(url, cluster=cluster) as prefix:
        store = PredictionStore(connect(url, cluster=cluster), prefix=prefix, pointer_cache_s=0)
        publish(store, "r1", ["a", "b", "c"])
        publish(store, "r2", ["a", "b"])
        options = ["--redis-url", url, "--prefix", prefix, *(["--cluster"] if cluster else [])]
        yield store, options
        store.client.close()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"CONREC_REDIS_URL": None}, catch_exceptions=False)


def test_status_shows_the_published_run_and_the_runs_within_ttl(target) -> None:
    _, options = target
    result = invoke("store", "status", *options, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    published = shown["published"]
    assert published["run_id"] == "r2"
    assert published["user_count"] == 2
    assert (published["codebook_version"], published["model_version"]) == ("cb-r2", "m@1")
    assert 0 <= published["age_s"] < 60
    assert 3 * 86_400 - 60 < published["expires_in_s"] <= 3 * 86_400
    assert [(r["run_id"], r["user_count"]) for r in shown["runs"]] == [("r2", 2), ("r1", 3)]

    table = invoke("store", "status", *options)
    assert table.exit_code == 0
    assert "Published run r2" in table.stdout
    assert "r2 (published)" in table.stdout
    assert "cb-r1" in table.stdout


def test_rollback_moves_the_pointer_back(target) -> None:
    store, options = target
    result = invoke("store", "rollback", "--run-id", "r1", *options, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["published"]["run_id"] == "r1"
    assert json.loads(result.stdout)["previous"] == "r2"
    assert store.current_run().run_id == "r1"
    assert store.get("c").version == "r1"  # c is only in r1
    assert invoke("store", "rollback", "--run-id", "r2", *options).exit_code == 0
    assert store.current_run().run_id == "r2"


def test_rollback_refuses_an_unknown_or_expired_run_in_one_line(target) -> None:
    store, options = target
    result = invoke("store", "rollback", "--run-id", "r0", *options)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "rollback refused: run r0 was never published completely (or has expired)"
    ]
    store.client.delete(store.keys.run("r1"))  # what expiry does to its metadata
    result = invoke("store", "rollback", "--run-id", "r1", *options)
    assert result.exit_code == 2
    assert result.stderr.strip() == "rollback refused: run r1 has expired: its predictions are gone"
    assert store.current_run().run_id == "r2"


def test_forget_erases_a_user_from_every_run_and_logs_the_erasure(target) -> None:
    store, options = target
    result = invoke("store", "forget", "a", *options, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"user_id": "a", "erased_from": ["r2", "r1"]}
    assert store.get("a") is None
    assert store.get("b").version == "r2"
    store.rollback("r1")
    assert store.get("a") is None
    assert store.get("c").version == "r1"
    # The erasure log readers poll: the count, then each erased id.
    assert int(store.client.get(store.keys.forgotten_count)) == 1
    assert store.client.get(store.keys.forgotten(1)) == b"a"
    assert store.client.ttl(store.keys.forgotten(1)) > 2 * 86_400
    again = invoke("store", "forget", "a", *options)
    assert again.exit_code == 0
    assert "none (no run held them)" in again.stdout


def test_an_embedded_store_in_use_by_another_client_keeps_running(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    service = connect(None, embedded_path=path)  # stands for a service serving this file
    try:
        store = PredictionStore(service, pointer_cache_s=0)
        publish(store, "r1", ["a"])
        publish(store, "r2", ["a"])
        service.save()  # as the batch job leaves it before a service starts on it
        result = invoke("store", "rollback", "--run-id", "r1", "--store-path", str(path))
        assert result.exit_code == 0, result.output
        assert service.ping()  # still up for the service
        assert store.current_run().run_id == "r1"
    finally:
        stop_embedded(service)
    # Saved to the file: a server started on it again sees the rollback.
    result = invoke("store", "status", "--store-path", str(path), "--json")
    assert json.loads(result.stdout)["published"]["run_id"] == "r1"


def test_a_store_must_be_named(tmp_path: Path) -> None:
    result = invoke("store", "status")
    assert result.exit_code == 2
    assert "--redis-url" in result.output
    missing = invoke("store", "status", "--store-path", str(tmp_path / "absent.db"))
    assert missing.exit_code == 2
    assert "no prediction store at" in missing.output


def test_store_commands_do_not_load_torch(redis_url: str) -> None:
    code = (
        "import sys\n"
        "from conrec.cli.main import app\n"
        f"app(['store', 'status', '--redis-url', {redis_url!r}, '--json'], standalone_mode=False)\n"
        "print('torch loaded' if 'torch' in sys.modules else 'no torch')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().endswith("no torch")
