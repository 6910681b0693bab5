import numpy as np
import pytest

from conrec.codebook.embed import MiniLMEncoder, embed_texts, load_precomputed


@pytest.fixture(scope="module")
def encoder():
    return MiniLMEncoder()


def test_minilm_gives_normalised_semantic_embeddings_offline(encoder):
    emb = encoder.encode(
        ["Toy Story. Animation, Children's", "A Bug's Life. Animation, Children's", "Heat. Crime"]
    )
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_embeddings_are_cached_on_disk(encoder, tmp_path):
    texts = [f"item number {i}" for i in range(5)]
    first = embed_texts(texts, encoder, cache_dir=tmp_path, batch_size=2)
    (cached,) = tmp_path.glob("emb-*.npy")
    np.testing.assert_array_equal(np.load(cached), first)
    np.save(cached, np.zeros_like(first))  # a hit returns the file, it does not re-encode
    assert not embed_texts(texts, encoder, cache_dir=tmp_path).any()
    assert embed_texts(texts[:4], encoder, cache_dir=tmp_path).any()  # other texts, other key


def test_precomputed_embeddings_follow_the_requested_order(tmp_path):
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.savez(tmp_path / "e.npz", item_ids=np.array(["a", "b", "c"]), embeddings=emb)
    got = load_precomputed(tmp_path / "e.npz", ["c", "a"])
    np.testing.assert_array_equal(got, emb[[2, 0]])
    with pytest.raises(ValueError, match="no embedding for 1 items"):
        load_precomputed(tmp_path / "e.npz", ["a", "zz"])
