"""The codebook's latent space centred or whitened inside the artifact: the catalogue keeps its
SIDs, decoded vectors move by the one affine map, and new items are encoded into the same space."""

import numpy as np
import pytest

from conrec.codebook.artifact import Codebook, load_codebook, load_item_sids
from conrec.codebook.bulk import BulkEncoder
from conrec.codebook.geometry import EIGENVALUE_FLOOR, reshape


@pytest.fixture(scope="module")
def raw(artifact_dir):
    return load_codebook(artifact_dir), load_item_sids(artifact_dir).codes.astype(np.int64)


def _reshaped(raw, geometry: str) -> Codebook:
    book, codes = raw
    codewords, encoder = reshape(book.codewords, book.encoder, codes, geometry)
    return Codebook(codewords, {"codebook_version": geometry}, encoder)


def test_centred_decodes_to_mean_zero_and_keeps_every_sid(raw, item_embeddings):
    book, codes = raw
    centred = _reshaped(raw, "centred")
    before, after = book.decode(codes), centred.decode(codes)
    np.testing.assert_allclose(after.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(after, before - before.mean(axis=0), atol=1e-4)
    # Every residual is unchanged, so the encoder quantises exactly as before.
    np.testing.assert_array_equal(
        BulkEncoder(centred).encode(item_embeddings), BulkEncoder(book).encode(item_embeddings)
    )
    # The anisotropy it removes: most pairs of raw decoded films point the same way.
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(codes), (2, 5000))

    def median_cosine(b: Codebook) -> float:
        pairs = b.decode_normalized(codes[i]) * b.decode_normalized(codes[j])
        return float(np.median(pairs.sum(axis=1)))

    assert median_cosine(book) > 0.5
    assert abs(median_cosine(centred)) < 0.1


def test_whitened_decodes_to_unit_covariance_and_encodes_in_the_same_space(raw, item_embeddings):
    book, codes = raw
    whitened = _reshaped(raw, "whitened")
    decoded, raw_decoded = whitened.decode(codes), book.decode(codes)
    np.testing.assert_allclose(decoded.mean(axis=0), 0, atol=1e-3)
    # Unit variance along every direction the catalogue spans; the near-empty ones (the floor)
    # are scaled, not blown up.
    spanned = np.linalg.eigvalsh(np.cov(raw_decoded, rowvar=False))
    kept = int((spanned >= EIGENVALUE_FLOOR * spanned.max()).sum())
    variances = np.linalg.eigvalsh(np.cov(decoded, rowvar=False))
    assert kept >= 4
    np.testing.assert_allclose(variances[-kept:], 1.0, atol=0.01)
    assert variances.max() < 1.01
    # One affine map moves both the catalogue's decoded vectors and new items' latents.
    linear, _, _, _ = np.linalg.lstsq(raw_decoded - raw_decoded.mean(axis=0), decoded, rcond=None)
    latents = book.encoder(item_embeddings[:50])
    np.testing.assert_allclose(
        whitened.encoder(item_embeddings[:50]),
        (latents - raw_decoded.mean(axis=0)) @ linear,
        rtol=1e-3,
        atol=1e-3,
    )


def test_raw_is_the_artifact_as_trained_and_a_typo_is_refused(raw):
    book, codes = raw
    codewords, encoder = reshape(book.codewords, book.encoder, codes, "raw")
    assert codewords is book.codewords
    assert encoder is book.encoder
    with pytest.raises(ValueError, match="geometry must be one of"):
        reshape(book.codewords, book.encoder, codes, "centered")
