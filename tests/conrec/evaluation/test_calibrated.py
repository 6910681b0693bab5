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
    Pairs,
    fit_model,
    offset_logistic,
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


def confounded_pairs(seed: int) -> Pairs:
    """Users who dislike a lot see items with a high `a`, yet within each user a high `a` means
    a like: pooled, `a` looks like a dislike signal. `b` is the signal within every user; the
    third column is a user-level feature, a noisy reading of how much the user dislikes."""
    rng = np.random.default_rng(seed)
    users, counts, features, kinds = [], [], [], []
    for u in range(300):
        hidden = rng.normal()  # how much the user dislikes, and how high their items' `a` runs
        a = rng.normal(3.0 * hidden, 1.0, 40)
        b = rng.normal(0.0, 1.0, 40)
        z = 1.5 * b - 1.5 * (a - 3.0 * hidden) + 2.0 * hidden - 1.0
        negative = rng.random(40) < 1 / (1 + np.exp(-z))
        order = np.argsort(~negative, kind="stable")  # a case's negatives first, then positives
        users.append(f"u{u}")
        counts.append((int(negative.sum()), int((~negative).sum()), 0))
        reading = np.full(40, hidden + rng.normal())
        features.append(np.column_stack([a, b, reading])[order])
        kinds.append(np.where(negative, 0, 1)[order])
    kinds = np.concatenate(kinds)
    return Pairs(users, counts, np.concatenate(features), kinds, np.ones(len(kinds), bool))


def test_the_within_user_fit_orders_each_users_candidates_by_what_separates_them():
    fit, test = confounded_pairs(0), confounded_pairs(1)
    columns = (0, 1, 2)

    def judged(model):
        return judge(test.cases(score_pairs(model, test, columns)), None)

    pooled = fit_model(fit, columns, CalibrationSettings(fit="pooled"))
    within = fit_model(fit, columns, CalibrationSettings(fit="within_user"))
    assert pooled.weights[0] > 0  # the confounded direction
    assert within.weights[0] < 0 < within.weights[1]
    assert judged(within).auc > judged(pooled).auc + 0.1
    # The user-level feature still moves the probability: heavy dislikers' candidates score
    # higher, so one threshold drops more of theirs.
    assert within.weights[2] > 0
    probabilities = score_pairs(within, test, columns)
    heavy = test.features[:, 2] > 0
    assert probabilities[heavy].mean() > probabilities[~heavy].mean()


def test_the_offset_regression_is_scikit_learns_without_an_offset_and_honours_one():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 2))
    y = (rng.random(2000) < 1 / (1 + np.exp(-(x @ [1.0, -2.0] + 0.5)))).astype(np.int64)
    reference = LogisticRegression(C=0.5).fit(x, y)
    weights, intercept = offset_logistic(x, y, np.zeros(2000), 0.5)
    np.testing.assert_allclose(weights, reference.coef_[0], rtol=1e-4)
    assert intercept == pytest.approx(reference.intercept_[0], rel=1e-4)
    # With the first feature's part as an offset, only the rest is fitted.
    weights, _ = offset_logistic(x[:, 1:], y, x[:, 0] * 1.0, 1e6)
    assert weights[0] == pytest.approx(-2.0, abs=0.25)
