import numpy as np
import pytest
import torch

from conrec.codebook.artifact import ArtifactError, Codebook, load_codebook, load_item_sids
from conrec.codebook.bulk import BulkEncoder
from conrec.codebook.train import encoder_weights


def test_faiss_bulk_encoder_agrees_with_the_torch_encoder(trained, artifact_dir, item_embeddings):
    torch_codes = trained.model.encode(torch.from_numpy(item_embeddings)).numpy()
    faiss_codes = BulkEncoder(load_codebook(artifact_dir)).encode(item_embeddings, batch_size=500)
    assert faiss_codes.dtype == np.uint16
    np.testing.assert_array_equal(faiss_codes, torch_codes)


def test_numpy_encoder_mlp_matches_torch(trained, item_embeddings):
    x = torch.from_numpy(item_embeddings[:64])
    with torch.no_grad():
        expected = trained.model.encoder(x).numpy()
    np.testing.assert_allclose(encoder_weights(trained.model)(x.numpy()), expected, atol=1e-5)


def test_new_items_never_take_a_published_sid(artifact_dir, item_embeddings):
    table = load_item_sids(artifact_dir)
    encoder = BulkEncoder(load_codebook(artifact_dir))
    # Near-copies of catalogue items land on their originals' SIDs greedily, and must move.
    rng = np.random.default_rng(0)
    new = item_embeddings[:200] + 1e-4 * rng.normal(size=(200, item_embeddings.shape[1]))
    greedy = encoder.encode(new)
    published = set(map(tuple, table.codes.tolist()))
    assert sum(tuple(c) in published for c in greedy.tolist()) > 100
    codes, unresolved = encoder.encode_new_items(new, table)
    fresh = [tuple(c) for c in codes.tolist()]
    assert unresolved + sum(sid not in published for sid in fresh) == 200
    assert len(set(fresh)) >= 200 - unresolved
    assert (codes[:, :-1] == greedy[:, :-1]).all()


def test_encoder_weights_are_required():
    with pytest.raises(ArtifactError, match="no encoder weights"):
        BulkEncoder(Codebook(np.zeros((3, 4, 2), dtype=np.float32)))
