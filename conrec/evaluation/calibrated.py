"""The calibrated score's rows of the decision table, and the artifact the service serves.

A logistic regression over a candidate's features (`codebook.calibration.FEATURES`) is fitted on
the validation split's (user, future item) pairs and judged on the test split's, three ways, to
isolate what the LLM adds:

- `calibrated`: the max-cosine features against CoNRec's predictions (the served row's sets,
  each test seed's own; the validation split's first seed for fitting);
- `calibrated_history`: the same features against the user's own last 20 negatives;
- `calibrated_no_set`: no max-cosine features at all (item prior and feedback, the user's
  dislike rate, the factorisation).

The shipped artifact (`calibration.npz` in the output folder) is the first, fitted with the
served row's validation predictions, its per-item parts at the last event of the data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.calibration import (
    FULL,
    WITHOUT_SET,
    CalibrationSettings,
    Pairs,
    fit_model,
    score_pairs,
    split_pairs,
    write_calibration,
)
from model.evaluation.cases import history_predictions
from model.evaluation.decision import DecisionResult, judge, merge_seeds

CALIBRATED = "calibrated"
CALIBRATED_HISTORY = "calibrated_history"
CALIBRATED_NO_SET = "calibrated_no_set"
LABELS = {
    CALIBRATED: "calibrated P(dislike), CoNRec's predictions as the set",
    CALIBRATED_HISTORY: "calibrated P(dislike), the user's own last 20 negatives as the set",
    CALIBRATED_NO_SET: "calibrated P(dislike), no max-cosine features",
}


def _predictions(path: Path) -> dict[str, np.ndarray]:
    payload = json.loads(path.read_text())
    return {u: np.asarray(s, dtype=np.int64) for u, s in payload["predictions"].items()}


def calibrated_rows(
    scenes: dict, out: Path, served: str | None, seeds: list[int], settings: CalibrationSettings
) -> dict[str, tuple[DecisionResult, list[float]]]:
    """name -> (the row's decision merged over seeds, its AUC per seed); writes the artifact."""
    test, validation = scenes[""], scenes["validation"]
    sets = {
        CALIBRATED_HISTORY: (
            history_predictions(validation.split.windows, validation.table),
            [history_predictions(test.split.windows, test.table)],
        )
    }
    if served:
        sets[CALIBRATED] = (
            _predictions(out / "rows" / "validation" / f"{served}-s{min(seeds)}.json"),
            [_predictions(out / "rows" / f"{served}-s{seed}.json") for seed in seeds],
        )
    rows: dict[str, tuple[DecisionResult, list[float]]] = {}
    fitted: dict[str, Pairs] = {}
    for name, (on_validation, on_test) in sets.items():
        fit = split_pairs(validation.split, validation.table, validation.codebook, on_validation,
                          settings)  # fmt: skip
        tests = [
            split_pairs(test.split, test.table, test.codebook, predictions, settings)
            for predictions in on_test
        ]
        fitted[name] = fit
        rows[name] = _judged(fit, tests, FULL, settings)
        if name == CALIBRATED_HISTORY:  # no set feature enters it: any set's pairs will do
            rows[CALIBRATED_NO_SET] = _judged(fit, tests, WITHOUT_SET, settings)
    shipped = CALIBRATED if served else CALIBRATED_HISTORY
    write_calibration(
        out,
        fitted[shipped],
        test.split.log,
        int(test.split.log.ts.max()),
        test.table,
        test.codebook,
        settings,
        fitted=f"`conrec evaluate`: {LABELS[shipped]}, fitted on the validation split",
    )
    return rows


def _judged(
    fit: Pairs, tests: list[Pairs], columns: tuple[int, ...], settings: CalibrationSettings
) -> tuple[DecisionResult, list[float]]:
    """A model on `columns` fitted on `fit`, its thresholds chosen there, judged on each of
    `tests` (one per seed): merged, and the AUC per seed."""
    model = fit_model(fit, columns, settings.c)
    chosen = fit.cases(score_pairs(model, fit, columns))
    results = [judge(pairs.cases(score_pairs(model, pairs, columns)), chosen) for pairs in tests]
    return merge_seeds(results), [r.auc for r in results]
