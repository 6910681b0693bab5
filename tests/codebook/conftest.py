"""A small RQ-VAE trained once on real ml-100k item embeddings, shared by the codebook tests."""

from __future__ import annotations

import numpy as np
import pytest

from codebook.rqvae import RQVAEConfig
from codebook.train import TrainConfig, train_rqvae, write_artifact


@pytest.fixture(scope="session")
def item_embeddings(ml100k, tmp_path_factory) -> np.ndarray:
    from codebook.embed import MiniLMEncoder, embed_texts
    from model.data.sources import cache_dir
    from model.data.tables import item_texts

    return embed_texts(item_texts(ml100k.items), MiniLMEncoder(), cache_dir() / "embeddings")


@pytest.fixture(scope="session")
def trained(item_embeddings):
    cfg = RQVAEConfig(in_dim=item_embeddings.shape[1], codebook_size=32, levels=3)
    return train_rqvae(item_embeddings, cfg, TrainConfig(epochs=60), progress=False)


@pytest.fixture(scope="session")
def artifact_dir(trained, ml100k, tmp_path_factory):
    out = tmp_path_factory.mktemp("codebook")
    write_artifact(out, trained, ml100k.items["item_id"].tolist(), TrainConfig(epochs=60))
    return out
