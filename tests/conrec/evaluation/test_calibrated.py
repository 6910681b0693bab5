"""The calibrated score on real ml-100k: fitted on the validation split, it separates a user's
future dislikes from their likes on the test split better than its best single input, and a
model that ignores its inputs would fail here."""

import numpy as np
import pytest

from conrec.codebook.artifact import load_codebook
from conrec.codebook.calibration import load_calibration
from conrec.evaluation.calibrated import (
    FULL,
    ITEMS_ONLY,
    fit_model,
    score_pairs,
    split_pairs,
    write_calibration,
)
from conrec.evaluation.cases import history_predictions
from conrec.evaluation.decision import judge
from conrec.evaluation.split import EvalSplit
from conrec.model.calibration import CalibrationSettings


@pytest.fixture(scope="module")
def pairs(ml100k, item_sids, artifact_dir):
    codebook = load_codebook(artifact_dir)
    splits = {name: EvalSplit.build(ml100k.events, item_sids, name)
              for name in ("validation", "test")}  # fmt: skip
    return splits, {
        name: split_pairs(split, item_sids, codebook,
                          history_predictions(split.windows, item_sids), CalibrationSettings())
        for name, split in splits.items()
    }  # fmt: skip


def test_calibrated_score_beats_its_inputs_on_the_test_split(pairs):
    _, found = pairs
    val, test = found["validation"], found["test"]

    def auc(columns, model=None):
        model = model or fit_model(val, columns)
        return judge(test.cases(score_pairs(model, test, columns)), None).auc

    full, prior_only = auc(FULL), auc((0,))
    assert full > 0.70  # measured 0.74 with the suite's codebook
    assert full > prior_only + 0.005
    # The same pipeline with a model that ignores its inputs scores every pair alike: 0.5.
    ignoring = fit_model(val, FULL)
    ignoring = type(ignoring)(np.zeros_like(ignoring.weights), ignoring.intercept,
                              ignoring.mean, ignoring.scale)  # fmt: skip
    assert auc(FULL, ignoring) == pytest.approx(0.5)
    assert auc(ITEMS_ONLY) < full


def test_the_written_artifact_scores_as_the_fitted_model(pairs, item_sids, artifact_dir, tmp_path):
    splits, found = pairs
    codebook = load_codebook(artifact_dir)
    log = splits["test"].log
    version = write_calibration(tmp_path, found["validation"], log, int(log.ts.max()), item_sids,
                                codebook, CalibrationSettings(), fitted="test")  # fmt: skip
    cal = load_calibration(tmp_path)
    assert cal.version == version
    assert cal.meta["user_layout"][:2] == ["user_dislike", "mf_bias"]
    model = fit_model(found["validation"], FULL)
    np.testing.assert_allclose(cal.full.weights, model.weights)
    aligned = cal.aligned(item_sids)
    assert aligned.features.shape == (len(item_sids), 2)
    # Every item has feedback by the last event: no item falls back on its prefix.
    assert (aligned.features[:, 1] > 0).all()
