"""The calibration artifact: its round trip, what it refuses, and its scoring by hand."""

import numpy as np
import pytest

from conrec.codebook.artifact import ArtifactError, ItemSIDTable
from conrec.codebook.calibration import (
    CALIBRATION_FILE,
    FEATURES,
    ITEM_FEATURES,
    LogisticModel,
    PredictedPrefixes,
    load_calibration,
    prefix_depth,
    save_calibration,
)
from tests.calibration_support import as_format_1

TABLE = ItemSIDTable(
    np.array(["a", "b", "c"]), np.array([[0, 0], [0, 1], [1, 0]], np.uint16), "cb1"
)


def model(n: int, weights=None) -> LogisticModel:
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    return LogisticModel(w, -1.0, np.zeros(n), np.ones(n))


def write(folder, items=("a", "b"), codebook="cb1", full=None) -> str:
    return save_calibration(
        folder,
        codebook_version=codebook,
        item_ids=np.array(items),
        item_features=np.array([[0.5, 1.0], [0.1, 2.0]])[: len(items)],
        prefix_features=np.array([[0.3, 0.0], [0.7, 0.5]]),
        mf_items=np.array([[1.0, 0.0, 0.2], [0.0, 1.0, -0.2]])[: len(items)],
        full=full or model(len(FEATURES)),
        items_only=model(len(ITEM_FEATURES), [2.0, 0.0]),
        meta={"fitted": "by hand"},
    )


def test_round_trip_and_a_version_that_follows_the_content(tmp_path):
    version = write(tmp_path)
    cal = load_calibration(tmp_path)
    assert (cal.version, cal.codebook_version, cal.factors) == (version, "cb1", 2)
    assert cal.meta["features"] == list(FEATURES)
    np.testing.assert_allclose(cal.item_features, [[0.5, 1.0], [0.1, 2.0]])
    assert write(tmp_path / "again") == version
    assert write(tmp_path / "other", full=model(len(FEATURES), np.zeros(6))) != version


def score_by_hand(folder, mf_mean: float):
    """Both models' scores of three candidates, and what their features sum to."""
    aligned = load_calibration(folder).aligned(TABLE)
    # "c" is not in the artifact: the prefix features of its first code (1).
    np.testing.assert_allclose(aligned.features[2], [0.7, 0.5])
    rows, first = np.array([0, 2, -1]), np.array([0, 1, 0])
    items_only = aligned.score(rows, first)
    z = 2.0 * np.array([0.5, 0.7, 0.3]) - 1.0  # items-only: 2 * prior - 1
    np.testing.assert_allclose(items_only, 1 / (1 + np.exp(-z)), rtol=1e-6)
    user = np.array([0.2, 0.05, 1.0, -1.0], np.float32)  # dislike, bias, factors
    full = aligned.score(rows, first, np.array([0.9, 0.8, 0.7]), np.array([2, 0, 1]), user)
    rating_a = mf_mean + 0.05 + 0.2 + 1.0  # (mean) + user bias + item bias + factors . user
    rating_unknown = mf_mean + 0.05  # no item factors
    x = np.array([[0.5, 1.0, 0.2, rating_a, 0.9, 2], [0.7, 0.5, 0.2, rating_unknown, 0.8, 0],
                  [0.3, 0.0, 0.2, rating_unknown, 0.7, 1]])  # fmt: skip
    np.testing.assert_allclose(full, 1 / (1 + np.exp(-(x.sum(axis=1) - 1))), rtol=1e-5)


def test_scoring_by_hand_and_an_unknown_item_by_its_prefix(tmp_path):
    write(tmp_path)
    score_by_hand(tmp_path, mf_mean=0.0)  # the rating is relative to its mean


def test_a_format_1_calibration_scores_as_it_was_fitted(tmp_path):
    write(tmp_path)
    as_format_1(tmp_path, mf_mean=0.1)
    assert load_calibration(tmp_path).meta["format_version"] == 1
    score_by_hand(tmp_path, mf_mean=0.1)  # its model saw the rating with its mean


def test_a_shifted_model_scores_the_shifted_inputs_alike():
    m = LogisticModel(np.array([0.5, -2.0]), 0.3, np.array([0.1, 0.2]), np.array([2.0, 0.5]))
    x = np.array([[0.4, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(m.shifted(1, 0.25)(x - [0.0, 0.25]), m(x), rtol=1e-6)


def test_a_calibration_for_another_codebook_or_a_corrupt_file_is_refused(tmp_path):
    write(tmp_path, codebook="cb0")
    with pytest.raises(ArtifactError, match="is for codebook cb0"):
        load_calibration(tmp_path).aligned(TABLE)
    (tmp_path / CALIBRATION_FILE).write_bytes(b"not an npz")
    with pytest.raises(ArtifactError, match="cannot read calibration"):
        load_calibration(tmp_path)
    with pytest.raises(ArtifactError, match="no calibration"):
        load_calibration(tmp_path / "absent")


def test_prefix_depth_counts_the_shared_leading_levels():
    predictions = np.array([[1, 2, 3], [4, 5, 6]])
    candidates = np.array([[1, 2, 3], [1, 2, 9], [1, 9, 3], [4, 5, 0], [9, 2, 3]])
    np.testing.assert_array_equal(prefix_depth(candidates, predictions), [3, 2, 1, 2, 0])


@pytest.mark.parametrize(
    ("size", "levels"),
    # 256 ** 8 overflows an int64: those SIDs are compared code by code instead of packed.
    [(4, 3), (256, 3), (256, 8)],
)
def test_prefix_depth_equals_its_definition_on_random_codes(size: int, levels: int):
    rng = np.random.default_rng(0)
    predictions = rng.integers(0, size, size=(20, levels))
    # Candidates sharing 0..levels leading codes with a prediction, and random ones.
    depths, sources = rng.integers(0, levels + 1, 40), rng.integers(0, 20, 40)
    shared = [
        np.hstack([predictions[p, :d], rng.integers(0, size, levels - d)])
        for d, p in zip(depths.tolist(), sources.tolist(), strict=True)
    ]
    candidates = np.vstack([*shared, rng.integers(0, size, size=(300, levels))])
    expected = [
        max(next((d for d in range(levels) if c[d] != p[d]), levels) for p in predictions)
        for c in candidates
    ]
    np.testing.assert_array_equal(prefix_depth(candidates, predictions), expected)
    # As the filter keeps them with a cached prediction: built once for the codebook's size.
    kept = PredictedPrefixes.of(predictions, size)
    assert (kept.packed is None) == (levels == 8)
    np.testing.assert_array_equal(kept.depth(candidates), expected)
    np.testing.assert_array_equal(kept.depth(candidates.astype(np.uint8)), expected)
