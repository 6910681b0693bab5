"""Fixtures for the batch job tests: a tiny model whose vocabulary covers ml-100k's items and
the prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.batch_gen.engines.tiny_setup import build_tiny_model_dir


@pytest.fixture(scope="session")
def model_dir(ml100k, tmp_path_factory) -> Path:
    return build_tiny_model_dir(ml100k, tmp_path_factory.mktemp("tiny-model"))
