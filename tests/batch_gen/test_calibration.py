"""The nightly refresh of the calibrated score's item side (`conrec.batch_gen.calibration`)."""

import numpy as np
import pytest

from conrec.batch_gen.calibration import refresh_calibration
from conrec.codebook.artifact import load_codebook, load_item_sids
from conrec.codebook.calibration import (
    FEATURES,
    ITEM_FEATURES,
    PRIOR_LIFT,
    LogisticModel,
    load_calibration,
    save_calibration,
)
from conrec.model.data.splits import cutoffs_for, user_windows
from tests.calibration_support import as_format_1

SETTINGS = {"prior_strength": 5.0, "user_strength": 2.0, "factors": 4, "regularization": 10.0}
FULL = LogisticModel(np.linspace(-1, 1, len(FEATURES)), 0.2, np.full(6, 0.1), np.full(6, 2.0))
ITEMS_ONLY = LogisticModel(np.array([3.0, -0.5]), -1.0, np.array([0.1, 2.0]), np.ones(2))


def fitted(folder, table, format_version: int) -> None:
    """A fitted calibration as `conrec evaluate` writes it (format 1: as it wrote it before the
    item priors were lifts)."""
    save_calibration(
        folder, codebook_version=table.codebook_version, item_ids=table.item_ids[:1],
        item_features=np.zeros((1, 2)), prefix_features=np.zeros((32, 2)),
        mf_items=np.zeros((1, 5)), full=FULL, items_only=ITEMS_ONLY,
        meta={"fitted": "by hand", "settings": SETTINGS},
    )  # fmt: skip
    if format_version == 1:
        as_format_1(folder, mf_mean=0.0)


@pytest.mark.parametrize("format_version", [1, 2])
def test_the_refresh_writes_prior_lifts_and_keeps_what_the_models_score(
    ml100k, artifact_dir, tmp_path, format_version
):
    table, codebook = load_item_sids(artifact_dir), load_codebook(artifact_dir)
    fitted(tmp_path / "fitted", table, format_version)
    events = ml100k.events
    windows = list(user_windows(events, cutoffs_for(events, "midpoint")))
    out = tmp_path / "refreshed"
    refreshed = refresh_calibration(
        tmp_path / "fitted", out, table, codebook, events, windows, "r1"
    )
    cal = load_calibration(out)
    assert (cal.version, cal.meta["format_version"]) == (refreshed.version, 2)

    # Each item's prior lift: its smoothed share of negatives less the catalogue's, at the
    # run's cutoff (a nightly run's `latest` is every user's).
    seen = events[events["ts"] <= max(w.cutoff for w in windows)]
    share = float((seen["polarity"] == "neg").mean())
    item = str(cal.item_ids[0])
    mine = seen[seen["item_id"] == item]
    prior = ((mine["polarity"] == "neg").sum() + 5.0 * share) / (len(mine) + 5.0)
    assert cal.item_features[0, PRIOR_LIFT] == pytest.approx(prior - share, rel=1e-5)

    # A format-1 model saw the absolute prior: its refreshed models give the scores it would
    # have given the absolute priors; a format-2 model is kept as fitted.
    x = np.array([[0.1, 3.0, 0.2, 0.5, 0.9, 1.0], [0.3, 1.0, 0.1, -0.5, 0.7, 0.0]])
    absolute = x + np.eye(len(FEATURES))[PRIOR_LIFT] * share
    if format_version == 1:
        np.testing.assert_allclose(cal.full(x), FULL(absolute), rtol=1e-6)
        np.testing.assert_allclose(
            cal.items_only(x[:, :2]), ITEMS_ONLY(absolute[:, : len(ITEM_FEATURES)]), rtol=1e-6
        )
    else:
        np.testing.assert_allclose(cal.full(x), FULL(x), rtol=1e-6)
        np.testing.assert_allclose(cal.items_only.mean, ITEMS_ONLY.mean)
