"""Fixtures for the filter service tests (helpers live in ``tests.service.support``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conrec.codebook.artifact import load_codebook
from conrec.service.core.config import Settings
from conrec.service.main import create_app, serving
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import isolated_prefix, private_redis
from tests.service.support import build_artifact, enforcing_thresholds


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("codebook")
    build_artifact(out)
    return out


@pytest.fixture(scope="session")
def enforce_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Thresholds enforcing 0.9 everywhere, what most service tests run with."""
    return enforcing_thresholds(tmp_path_factory.mktemp("thresholds"))


@pytest.fixture(scope="session")
def codebook_version(artifact_dir: Path) -> str:
    return load_codebook(artifact_dir).version


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    with isolated_prefix(redis_url) as name:
        yield name


@pytest.fixture
def shared_store(redis_url: str, prefix: str) -> PredictionStore:
    return PredictionStore(connect(redis_url), prefix=prefix, pointer_cache_s=0.0)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., tuple]]:
    """Start private redis-server processes, killed after the test; each call: (process, url)."""
    with contextlib.ExitStack() as stack:
        yield lambda *extra: stack.enter_context(private_redis(tmp_path, *extra))


@pytest.fixture
def make_settings(
    artifact_dir: Path, prefix: str, redis_url: str, enforce_file: Path
) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values = {
            "redis_url": redis_url,
            "store_prefix": prefix,
            "codebook_dir": artifact_dir,
            "thresholds_file": enforce_file,
            "pointer_cache_s": 0.0,
            "redis_timeout_ms": 200.0,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., httpx.Client]]:
    """Start a service with the given settings overrides; returns an HTTP client bound to it."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: object) -> httpx.Client:
            url = stack.enter_context(serving(create_app(make_settings(**overrides))))
            return stack.enter_context(httpx.Client(base_url=url, timeout=10))

        yield start


@pytest.fixture(scope="module")
def server_module(
    artifact_dir: Path, redis_url: str, enforce_file: Path
) -> Iterator[Callable[..., httpx.Client]]:
    """Like ``server``, shared by a module's tests; it reads a prefix no test writes to."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: object) -> httpx.Client:
            settings = Settings(
                redis_url=redis_url,
                store_prefix=f"test-{uuid.uuid4().hex[:12]}",
                codebook_dir=artifact_dir,
                **{"thresholds_file": enforce_file, **overrides},
            )
            url = stack.enter_context(serving(create_app(settings)))
            return stack.enter_context(httpx.Client(base_url=url, timeout=10))

        yield start
