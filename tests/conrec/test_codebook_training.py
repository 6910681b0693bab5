"""Collaborative item vectors for the codebook: learnt from each user's events up to their own
cutoff, alike for items rated alike, none for an item nobody rated by then."""

import numpy as np
import pandas as pd

from conrec.codebook.rqvae import RQVAEConfig
from conrec.codebook.train import TrainConfig
from conrec.codebook_training import CodebookTraining, collaborative_vectors


def test_items_rated_alike_are_close_and_unrated_items_have_no_vector():
    rows = []
    for u in range(200):
        # Two tastes: users 0-99 dislike a and b and like c and d; 100-199 the reverse.
        for t, item in enumerate("abcd"):
            polarity = "neg" if (u < 100) == (item in "ab") else "pos"
            rows.append((f"u{u}", item, t, polarity))
        # Four later events: each user's midpoint cutoff falls after d, before these.
        rows += [(f"u{u}", "late", 100 + t, "neg") for t in range(4)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"])
    events = events.sort_values(["user_id", "ts"]).reset_index(drop=True)
    vectors = collaborative_vectors(events, ["a", "b", "c", "d", "late", "never"], "midpoint")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    assert cos[0, 1] > 0.9
    assert cos[2, 3] > 0.9
    assert cos[0, 2] < cos[0, 1] - 0.5  # a far from c
    np.testing.assert_array_equal(vectors[4], 0)  # only rated after every cutoff
    np.testing.assert_array_equal(vectors[5], 0)  # never rated


def test_a_collaborative_codebook_gives_no_sid_to_an_item_nobody_rated(tmp_path):
    from conrec.codebook.artifact import load_item_sids
    from conrec.codebook_training import train_codebook

    folder = _toy_tables(tmp_path, items=40)
    cfg = CodebookTraining(
        item_vectors="collaborative",
        rqvae=RQVAEConfig(levels=2, codebook_size=8, latent_dim=4),
        training=TrainConfig(epochs=3),
    )
    metrics = train_codebook(tmp_path / "codebook", data=folder, cfg=cfg)
    table = load_item_sids(tmp_path / "codebook")
    assert "i39" not in table  # nobody ever rated it
    assert metrics["items_without_sid"] == 40 - len(table) >= 1


def test_a_centred_codebook_keeps_the_sids_of_the_same_training_and_says_so(tmp_path):
    from conrec.codebook.artifact import load_codebook, load_item_sids
    from conrec.codebook_training import train_codebook

    vectors = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32) + 3.0
    np.savez(tmp_path / "vectors.npz", item_ids=[f"i{n}" for n in range(60)], embeddings=vectors)
    tables, books = _toy_tables(tmp_path), {}
    for geometry in ("raw", "centred"):
        cfg = CodebookTraining(
            embeddings=str(tmp_path / "vectors.npz"),
            geometry=geometry,
            rqvae=RQVAEConfig(levels=2, codebook_size=8, latent_dim=4),
            training=TrainConfig(epochs=3),
        )
        train_codebook(tmp_path / geometry, data=tables, cfg=cfg)
        books[geometry] = load_codebook(tmp_path / geometry), load_item_sids(tmp_path / geometry)
    (raw, raw_table), (centred, centred_table) = books["raw"], books["centred"]
    np.testing.assert_array_equal(raw_table.codes, centred_table.codes)
    assert (raw.meta["geometry"], centred.meta["geometry"]) == ("raw", "centred")
    assert raw.version != centred.version
    codes = centred_table.codes.astype(np.int64)
    np.testing.assert_allclose(centred.decode(codes).mean(axis=0), 0, atol=1e-4)
    assert np.abs(raw.decode(codes).mean(axis=0)).max() > 1e-2


def _toy_tables(tmp_path, items: int = 60):
    """A prepared-tables folder of 60 users rating every item but the last at random."""
    from conrec.model.data.prepared import write_tables
    from conrec.model.data.sources import DataTables
    from conrec.model.data.tables import LoadReport

    rng = np.random.default_rng(0)
    ids = [f"i{n}" for n in range(items)]
    rows = []
    for u in range(60):
        for t, item in enumerate(rng.choice(ids[:-1], 12, replace=False)):
            rows.append((f"u{u}", item, t, rng.choice(["neg", "pos", "exposure"])))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"]).assign(reason="")
    catalogue = pd.DataFrame({"item_id": ids, "title": ids, "category": "", "text": ""})
    tables = DataTables("toy", catalogue, events.sort_values(["user_id", "ts"]), LoadReport("toy"))
    return write_tables(tables, tmp_path / "tables")
