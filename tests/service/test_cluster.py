"""POST /filter over real HTTP against a real 3-node Redis Cluster (CONREC_REDIS_CLUSTER)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conrec.service.core.config import Settings
from conrec.service.main import create_app, serving
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import isolated_prefix
from tests.service.support import ITEMS, publish_run

# Half the users are predicted to dislike e0, the other half e2.
USERS = {f"user-{i}": [(0, 0, 0) if i % 2 else (2, 0, 0)] * 2 for i in range(40)}
BODY = {
    "candidates": [{"item_id": n, "sid": list(ITEMS[n])} for n in ("e0", "e1", "e2")],
    "threshold": 0.8,
}


@pytest.fixture
def cluster_prefix(redis_cluster_url: str) -> Iterator[str]:
    with isolated_prefix(redis_cluster_url, cluster=True) as prefix:
        yield prefix


def cluster_settings(url: str, prefix: str, artifact_dir: Path, thresholds: Path) -> Settings:
    return Settings(
        redis_url=url,
        redis_cluster=True,
        store_prefix=prefix,
        codebook_dir=artifact_dir,
        thresholds_file=thresholds,
        pointer_cache_s=0.0,
        redis_timeout_ms=2000.0,  # a shared, busy test machine: no spurious fail-open
    )


def test_filter_reads_every_users_prediction_from_the_cluster(
    redis_cluster_url: str,
    cluster_prefix: str,
    artifact_dir: Path,
    codebook_version: str,
    enforce_file: Path,
) -> None:
    store = PredictionStore(connect(redis_cluster_url, cluster=True), prefix=cluster_prefix)
    publish_run(store, "r1", codebook_version, USERS)
    nodes = {store.client.get_node_from_key(store.keys.user("r1", u)).name for u in USERS}
    assert len(nodes) == 3  # the users' predictions live on every node

    settings = cluster_settings(redis_cluster_url, cluster_prefix, artifact_dir, enforce_file)
    with serving(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as api:

        def dropped(user: str) -> tuple[str, list[str], bool]:
            out = api.post("/filter", json={**BODY, "user_id": user}).json()
            assert out["prediction_version"] == "r1", out
            return user, [d["item_id"] for d in out["dropped"]], out["fail_open"]

        # Concurrent requests, as a ranking service sends them.
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(dropped, USERS))
    for user, items, fail_open in results:
        assert not fail_open
        assert items == (["e0"] if USERS[user][0] == (0, 0, 0) else ["e2"]), user


def test_an_unreachable_cluster_fails_open(artifact_dir: Path, enforce_file: Path) -> None:
    settings = cluster_settings("redis://127.0.0.1:1/0", "p", artifact_dir, enforce_file)
    with serving(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as api:
        out = api.post("/filter", json={**BODY, "user_id": "u"}).json()
    assert out["kept"] == ["e0", "e1", "e2"]
    assert out["fail_open_reason"] == "redis_error"


def test_cluster_mode_needs_a_url() -> None:
    with pytest.raises(ValueError, match="CONREC_REDIS_CLUSTER needs CONREC_REDIS_URL"):
        Settings(embedded=True, redis_cluster=True)
