"""Shared fixtures of the model tests: a synthetic 3 x 8 codebook over ml-100k's items (the
root conftest provides ml-100k), the tiny backbone, and a local Spark session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conrec.codebook.artifact import EncoderWeights, load_codebook, load_item_sids, save_artifact

LEVELS, SIZE, DIM = 3, 8, 8


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory, ml100k) -> Path:
    """A random 3 x 8 codebook and a SID for every ml-100k item (collisions allowed)."""
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("codebook")
    item_ids = ml100k.items["item_id"].astype(str).tolist()
    codes = rng.integers(0, SIZE, size=(len(item_ids), LEVELS))
    encoder = EncoderWeights((np.eye(DIM, dtype=np.float32),), (np.zeros(DIM, np.float32),))
    save_artifact(out, rng.normal(size=(LEVELS, SIZE, DIM)), encoder, item_ids, codes, {})
    return out


@pytest.fixture(scope="session")
def codebook(artifact_dir):
    return load_codebook(artifact_dir)


@pytest.fixture(scope="session")
def item_sids(artifact_dir):
    return load_item_sids(artifact_dir)


@pytest.fixture(scope="session")
def tokenizer(ml100k):
    from conrec.model.backbone import build_tokenizer
    from conrec.model.data.tables import item_texts
    from conrec.model.prompts import prompt_vocabulary

    return build_tokenizer(item_texts(ml100k.items) + prompt_vocabulary(), LEVELS, SIZE)


def make_tiny_model(tokenizer):
    from conrec.model.backbone import TinyBackboneConfig, build_tiny_model

    cfg = TinyBackboneConfig(hidden_size=32, intermediate_size=64, head_dim=8)
    return build_tiny_model(tokenizer, cfg)


@pytest.fixture
def tiny_model(tokenizer):
    """A fresh tiny Qwen3 per test (training mutates it)."""
    return make_tiny_model(tokenizer)


@pytest.fixture(scope="session")
def trie(item_sids, tokenizer):
    from conrec.model.constrained import build_sid_trie

    return build_sid_trie(item_sids.codes, tokenizer)


@pytest.fixture(scope="session")
def windows(ml100k):
    """Training windows of the first 60 users (time-ordered, eval data excluded)."""
    from conrec.model.data.splits import midpoint_cutoffs, training_cutoffs, user_windows

    events = ml100k.events
    users = sorted(events["user_id"].unique())[:60]
    events = events[events["user_id"].isin(users)]
    cutoffs = training_cutoffs(events, midpoint_cutoffs(events), max_per_user=2)
    return list(user_windows(events, cutoffs))


@pytest.fixture(scope="session")
def spark():
    pyspark = pytest.importorskip("pyspark.sql")
    session = (
        pyspark.SparkSession.builder.master("local[2]")
        .appName("conrec-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def changed_parameters(before: dict, model) -> list[str]:
    """Names of the tensors of `model` that differ from the `before` state dict copy."""
    import torch

    after = model.state_dict()
    return [k for k, v in before.items() if not torch.equal(v, after[k])]


def snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
