"""The run cache over HTTP: a user read once is served without Redis until the published run
changes (a new run, a rollback) or the user is erased; absent users are cached too; the bounds
and counts are exported."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from conrec.cli.main import app
from conrec.store.runs import PredictionStore
from tests.service.support import publish_run, scraped

# e1 scores 1.0 against a prediction of (1, 0, 0) and 0.0 against (0, 0, 0); e0 the reverse.
BODY = {"candidates": [{"item_id": "e0"}, {"item_id": "e1"}], "threshold": 0.5}
LIKES_E1, LIKES_E0 = [(0, 0, 0)], [(1, 0, 0)]


def kept(api: httpx.Client, user: str) -> tuple[list[str], str | None]:
    out = api.post("/filter", json={**BODY, "user_id": user}).json()
    return out["kept"], out["fail_open_reason"]


def cache_metrics(api: httpx.Client) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(api.get("/metrics").text):
        if family.name.startswith("conrec_prediction_cache"):
            for sample in family.samples:
                label = next(iter(sample.labels.values()), "")
                found[f"{sample.name}{':' + label if label else ''}"] = sample.value
    return found


def test_a_user_read_once_is_served_from_the_cache_until_the_run_changes(
    server: Callable[..., httpx.Client], shared_store: PredictionStore, codebook_version: str
) -> None:
    publish_run(shared_store, "r1", codebook_version, {"u": LIKES_E1})
    api = server()
    assert kept(api, "u") == (["e1"], None)
    # The run's value is gone from Redis (only `forget` deletes one, and it tells readers):
    # the cached prediction is still served, with no read.
    shared_store.client.delete(shared_store.keys.user("r1", "u"))
    assert kept(api, "u") == (["e1"], None)
    assert cache_metrics(api)["conrec_prediction_cache_lookups_total:hit"] == 1
    # The Redis latency histogram times the one read, not the hit.
    metrics = api.get("/metrics").text
    assert scraped(metrics, "conrec_redis_request_duration_seconds_count") == 1
    # A new run is published: the cache is dropped and the new prediction served.
    publish_run(shared_store, "r2", codebook_version, {"u": LIKES_E0})
    assert kept(api, "u") == (["e0"], None)
    # A rollback to r1, whose value for u was deleted above: read again, not served from r2.
    shared_store.rollback("r1")
    assert kept(api, "u") == (["e0", "e1"], "no_prediction")
    metrics = cache_metrics(api)
    assert metrics["conrec_prediction_cache_evictions_total:run"] == 2
    assert metrics["conrec_prediction_cache_entries"] == 1


def test_a_user_absent_from_the_run_is_cached_as_a_miss(
    server: Callable[..., httpx.Client], shared_store: PredictionStore, codebook_version: str
) -> None:
    publish_run(shared_store, "r1", codebook_version, {"u": LIKES_E1})
    api = server()
    assert kept(api, "new") == (["e0", "e1"], "no_prediction")
    # Written into the published run behind the readers' back (runs are immutable): not seen.
    writer = shared_store.begin_run("r1", codebook_version=codebook_version, model_version="m1",
                                    k=1)  # fmt: skip
    writer.write_batch(["new"], [LIKES_E1])
    assert kept(api, "new") == (["e0", "e1"], "no_prediction")
    # Without a cache, every request reads Redis.
    uncached = server(prediction_cache_entries=0)
    assert kept(uncached, "new") == (["e1"], None)
    assert cache_metrics(uncached)["conrec_prediction_cache_entries"] == 0


def test_the_cache_holds_at_most_its_configured_entries(
    server: Callable[..., httpx.Client], shared_store: PredictionStore, codebook_version: str
) -> None:
    users = {f"u{i}": LIKES_E1 for i in range(5)}
    publish_run(shared_store, "r1", codebook_version, users)
    api = server(prediction_cache_entries=2)
    for user in users:
        assert kept(api, user) == (["e1"], None)
    metrics = cache_metrics(api)
    assert metrics["conrec_prediction_cache_entries"] == 2
    assert metrics["conrec_prediction_cache_evictions_total:capacity"] == 3
    assert 0 < metrics["conrec_prediction_cache_bytes"] < 10_000
    assert metrics["conrec_prediction_cache_lookups_total:miss"] == 5


def test_an_erased_user_leaves_every_service_cache_within_the_poll_interval(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    redis_url: str,
) -> None:
    publish_run(shared_store, "r1", codebook_version, {"u": LIKES_E1, "v": LIKES_E1})
    publish_run(shared_store, "r2", codebook_version, {"u": LIKES_E1, "v": LIKES_E1})
    services = [server(thresholds_reload_s=0.2) for _ in range(2)]
    for api in services:
        assert kept(api, "u") == (["e1"], None)
        assert kept(api, "v") == (["e1"], None)
    result = CliRunner().invoke(
        app,
        ["store", "forget", "u", "--json", "--redis-url", redis_url,
         "--prefix", shared_store.keys.prefix],
        env={"CONREC_REDIS_URL": None},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"erased_from": ["r2", "r1"]' in result.stdout
    for run in ("r1", "r2"):
        assert shared_store.client.exists(shared_store.keys.user(run, "u")) == 0
    deadline = time.monotonic() + 5
    for api in services:
        while kept(api, "u") != (["e0", "e1"], "no_prediction"):
            assert time.monotonic() < deadline, "an erased user was still served"
            time.sleep(0.05)
        assert kept(api, "v") == (["e1"], None)  # the others stay cached
        assert cache_metrics(api)["conrec_prediction_cache_evictions_total:erased"] == 1
