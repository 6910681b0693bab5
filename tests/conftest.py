"""Fixtures shared by every part's tests: the real datasets in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """../shared's copy where there is one (CI), else the loader's own fetched-and-cached copy."""
    from model.data.sources import ml100k_dir as resolve

    path = SHARED_DATA / "ml-100k"
    return path if (path / "ml-100k.inter").is_file() else resolve(None)


@pytest.fixture(scope="session")
def kuairand_file() -> Path:
    path = SHARED_DATA / "kuairand-like-hate" / "processed_standard_kcore_15.tsv"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the KuaiRand file ships only with ../shared")
    return path


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path):
    from model.data.sources import load_ml100k

    return load_ml100k(ml100k_dir)
