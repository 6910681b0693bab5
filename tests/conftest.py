"""Fixtures shared by every part's tests: the real datasets in ../shared/data, and a small
RQ-VAE codebook trained once on real ml-100k item embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


@pytest.fixture(scope="session")
def item_embeddings(ml100k, tmp_path_factory) -> np.ndarray:
    from codebook.embed import MiniLMEncoder, embed_texts
    from model.data.tables import item_texts
    from model.pypi import cache_dir

    return embed_texts(item_texts(ml100k.items), MiniLMEncoder(), cache_dir() / "embeddings")


@pytest.fixture(scope="session")
def trained(item_embeddings):
    from codebook.rqvae import RQVAEConfig
    from codebook.train import TrainConfig, train_rqvae

    cfg = RQVAEConfig(in_dim=item_embeddings.shape[1], codebook_size=32, levels=3)
    return train_rqvae(item_embeddings, cfg, TrainConfig(epochs=60), progress=False)


@pytest.fixture(scope="session")
def artifact_dir(trained, ml100k, tmp_path_factory) -> Path:
    from codebook.train import TrainConfig, write_artifact

    out = tmp_path_factory.mktemp("codebook")
    write_artifact(out, trained, ml100k.items["item_id"].tolist(), TrainConfig(epochs=60))
    return out
