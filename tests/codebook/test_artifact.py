import json

import numpy as np
import pytest
import torch

from conrec.codebook.artifact import (
    CODEBOOK_FILE,
    ArtifactError,
    Codebook,
    InvalidSIDError,
    ItemSIDTable,
    load_codebook,
    load_item_sids,
)


def test_reader_decode_equals_the_torch_model(trained, artifact_dir):
    cb = load_codebook(artifact_dir)
    codes = trained.codes.astype(np.int64)
    expected = sum(
        trained.model.quantizers[d].codewords[torch.from_numpy(codes[:, d])]
        for d in range(cb.levels)
    ).numpy()
    np.testing.assert_allclose(cb.decode(codes), expected, rtol=1e-5, atol=1e-6)
    # Any leading shape: [users, K, D] -> [users, K, dim]
    batch = codes[:40].reshape(2, 20, 3)
    assert cb.decode(batch).shape == (2, 20, cb.dim)
    np.testing.assert_allclose(cb.decode(batch)[1, 0], expected[20], rtol=1e-5, atol=1e-6)
    norms = np.linalg.norm(cb.decode_normalized(batch), axis=-1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_artifact_carries_version_config_and_item_table(trained, artifact_dir, ml100k):
    cb = load_codebook(artifact_dir)
    table = load_item_sids(artifact_dir)
    assert (cb.levels, cb.size) == (3, 32)
    assert table.codebook_version == cb.version
    assert cb.meta["metrics"]["items"] == 1682
    assert cb.meta["rqvae"]["codebook_size"] == 32
    assert len(table) == 1682
    assert table.sid_of("1") == tuple(int(c) for c in trained.codes[0])
    codes, missing = table.lookup(["2", "nope", "1"])
    assert missing == ["nope"]
    assert codes.tolist() == [trained.codes[1].tolist(), trained.codes[0].tolist()]
    assert sum(len(v) for v in table.items_by_sid().values()) == 1682


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ([[1, 2]], r"a SID has 3 codes .* got shape \(1, 2\)"),
        ([1, 2, 32], r"SID code 32 at level 2 is out of range \[0, 32\)"),
        ([[0, -1, 0]], r"SID code -1 at level 1 is out of range"),
        ([0.5, 1, 2], r"must be integers"),
        ([], r"empty"),
        ([["a", "b", "c"]], r"must be integers"),
        (5, r"a SID has 3 codes"),
    ],
)
def test_invalid_codes_are_rejected_with_a_clear_message(artifact_dir, codes, message):
    with pytest.raises(InvalidSIDError, match=message):
        load_codebook(artifact_dir).decode(codes)


def test_integral_floats_are_accepted(artifact_dir):
    cb = load_codebook(artifact_dir)
    np.testing.assert_array_equal(cb.decode([1.0, 2.0, 3.0]), cb.decode([1, 2, 3]))


def test_unreadable_artifacts_raise_artifact_error(tmp_path, artifact_dir):
    with pytest.raises(ArtifactError, match="no codebook artifact"):
        load_codebook(tmp_path)
    (tmp_path / CODEBOOK_FILE).write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="cannot read codebook artifact"):
        load_codebook(tmp_path)
    with np.load(artifact_dir / CODEBOOK_FILE) as npz:
        arrays = dict(npz)
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps({**meta, "format_version": 99}))
    np.savez(tmp_path / CODEBOOK_FILE, **arrays)
    with pytest.raises(ArtifactError, match="format version 99"):
        load_codebook(tmp_path)


def test_codebook_is_read_only_and_shape_checked():
    cb = Codebook(np.zeros((2, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="read-only"):
        cb.codewords[0, 0, 0] = 1.0
    with pytest.raises(ArtifactError, match="levels, size, dim"):
        Codebook(np.zeros((4, 3), dtype=np.float32))


def test_squared_norms_from_the_gram_tables_equal_decoded_norms():
    rng = np.random.default_rng(0)
    codebook = Codebook(rng.normal(size=(3, 32, 8)).astype(np.float32))
    codes = rng.integers(0, 32, size=(200, 3))
    expected = (codebook.decode(codes).astype(np.float64) ** 2).sum(-1)
    np.testing.assert_allclose(codebook.squared_norms(codes), expected, rtol=1e-5)
    gram = codebook.gram
    assert gram is codebook.gram
    assert sorted(gram.cross) == [(0, 1), (0, 2), (1, 2)]
    assert not gram.squares.flags.writeable


def test_rows_of_codes_finds_items_by_sid_and_declines_shared_sids():
    table = ItemSIDTable(
        np.array(["a", "b", "c"]), np.array([[0, 2], [1, 0], [0, 1]], np.uint16), "v"
    )
    rows = table.rows_of_codes(np.array([[1, 0], [0, 1], [0, 2], [2, 0], [0, 3], [5, 5]]))
    np.testing.assert_array_equal(rows, [1, 2, 0, -1, -1, -1])  # the last three: not items
    shared = ItemSIDTable(np.array(["a", "b"]), np.array([[0, 1], [0, 1]], np.uint16), "v")
    assert shared.rows_of_codes(np.array([[0, 1]])) is None  # ask by id instead
