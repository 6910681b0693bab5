"""The calibrated score on an evaluation split: its fit, the artifact the service serves, and
its rows of the decision table.

Every (user, future item) of a split's decision population is a pair with its features
(`conrec.codebook.calibration.FEATURES`), each user's at their own cutoff under the time-consistent
protocol: the item features from the events up to it (`conrec.model.calibration`), the factorisation
refitted per bucket of cutoffs with the user folded in, and the max cosine and SID-prefix depth
to a prediction set. A logistic regression over these features is fitted on the validation
split's pairs and judged on the test split's, three ways, to isolate what the LLM adds:

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conrec.codebook.artifact import Codebook, ItemSIDTable
from conrec.codebook.calibration import (
    FEATURES,
    ITEM_FEATURES,
    LogisticModel,
    prefix_depth,
    user_layout,
)
from conrec.codebook.similarity import max_cosine
from conrec.evaluation.cases import decision_population, future_sets, history_predictions
from conrec.evaluation.decision import DecisionCase, DecisionResult, judge, merge_seeds
from conrec.evaluation.split import EvalSplit
from conrec.model.calibration import (
    CalibrationSettings,
    fit_item_side,
    item_parts,
    save_item_side,
    user_dislike,
)
from conrec.model.data.visibility import EventLog, refit_schedule
from conrec.model.mf import MatrixFactorization


@dataclass
class Pairs:
    """Every (user, future item) of a split's decision population, with its features."""

    users: list[str]  # per case
    counts: list[tuple[int, int, int]]  # per case: negatives, positives, others
    features: np.ndarray  # [P, len(FEATURES)], cases' items in order (future_sets)
    kinds: np.ndarray  # [P] 0 negative, 1 positive, 2 other
    scored: np.ndarray  # [P] bool: the item has a SID

    @classmethod
    def concat(cls, parts: Sequence[Pairs]) -> Pairs:
        """Several splits' pairs as one (a model fitted on all of them)."""
        return cls(
            [u for p in parts for u in p.users],
            [c for p in parts for c in p.counts],
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.kinds for p in parts]),
            np.concatenate([p.scored for p in parts]),
        )

    def cases(self, scores: np.ndarray) -> list[DecisionCase]:
        """Decision cases from one score per pair; items without a SID score -inf (kept)."""
        scores = np.where(self.scored, scores, -np.inf)
        out, at = [], 0
        for user, sizes in zip(self.users, self.counts, strict=True):
            parts = []
            for size in sizes:
                parts.append(scores[at : at + size])
                at += size
            out.append(DecisionCase(user, *parts))
        return out


def split_pairs(
    split: EvalSplit,
    table: ItemSIDTable,
    codebook: Codebook,
    predictions: Mapping[str, np.ndarray],
    settings: CalibrationSettings,
) -> Pairs:
    """Features of every (user, future item) of `split`, each user's at their cutoff: item
    features from the events up to it, the factorisation per bucket of cutoffs (the user folded
    in), and the max cosine and prefix depth to `predictions` ([K, D] codes; a user without one
    gets 0 for both)."""
    windows = {w.user_id: w for w in decision_population(split.windows)}
    sets = {u: future_sets(w) for u, w in windows.items()}
    rows = {u: table.rows_of([i for items in s for i in items]) for u, s in sets.items()}
    rating: dict[str, np.ndarray] = {}
    mf = MatrixFactorization(len(table), settings.mf)
    for point in refit_schedule(split.cutoffs, split.buckets):
        members = [u for u in point.users if u in windows]
        if not members:
            continue
        mf.fit_until(split.log, point.until)
        for u in members:
            history = table.rows_of(windows[u].history_items.tolist())
            factors, bias = mf.fold_in(history, windows[u].history_polarity)
            r = np.maximum(rows[u], 0)
            rating[u] = bias + mf.item_bias[r] + mf.item_factors[r] @ factors  # less mf.mean
    blocks: dict[str, np.ndarray] = {}
    for point in refit_schedule(split.cutoffs, None):
        members = [u for u in point.users if u in windows]
        if not members:
            continue
        parts = item_parts(split.log, point.until, table, codebook.size, settings.prior_strength)
        for u in members:
            r = np.maximum(rows[u], 0)
            codes = table.codes[r].astype(np.int64)
            pred = predictions.get(u)
            if pred is not None and len(pred):
                pred = np.asarray(pred, dtype=np.int64)
                cosine, depth = max_cosine(codebook, codes, pred), prefix_depth(codes, pred)
            else:
                cosine, depth = np.zeros(len(r)), np.zeros(len(r))
            dislike = user_dislike(windows[u], parts.share, settings.user_strength)
            blocks[u] = np.column_stack(
                [parts.features[r], np.full(len(r), dislike), rating[u], cosine, depth]
            )
    users = list(windows)
    return Pairs(
        users,
        [tuple(len(s) for s in sets[u]) for u in users],
        np.concatenate([blocks[u] for u in users]) if users else np.zeros((0, len(FEATURES))),
        np.concatenate([np.repeat([0, 1, 2], [len(s) for s in sets[u]]) for u in users])
        if users
        else np.zeros(0, np.int64),
        np.concatenate([rows[u] >= 0 for u in users]) if users else np.zeros(0, bool),
    )


def fit_model(pairs: Pairs, columns: Sequence[int], c: float = 1.0) -> LogisticModel:
    """A logistic regression of negative (1) against positive (0) on the chosen feature
    columns, standardised (scikit-learn, L2)."""
    from sklearn.linear_model import LogisticRegression

    keep = (pairs.kinds < 2) & pairs.scored
    x = pairs.features[keep][:, list(columns)]
    y = (pairs.kinds[keep] == 0).astype(np.int64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(C=c, max_iter=1000).fit((x - mean) / scale, y)
    return LogisticModel(model.coef_[0], float(model.intercept_[0]), mean, scale)


def score_pairs(model: LogisticModel, pairs: Pairs, columns: Sequence[int]) -> np.ndarray:
    return model(pairs.features[:, list(columns)])


FULL = tuple(range(len(FEATURES)))
ITEMS_ONLY = tuple(FEATURES.index(f) for f in ITEM_FEATURES)
WITHOUT_SET = tuple(i for i, f in enumerate(FEATURES) if f not in ("max_cosine", "prefix_depth"))


def write_calibration(
    out_dir,
    validation: Pairs,
    log: EventLog,
    until: int,
    table: ItemSIDTable,
    codebook: Codebook,
    settings: CalibrationSettings,
    fitted: str,
) -> str:
    """Fit both models on `validation` and write the artifact with the per-item parts at
    `until` (the factorisation's item side fitted on the events up to it)."""
    parts, mf = fit_item_side(log, until, table, codebook.size, settings.prior_strength,
                              settings.mf)  # fmt: skip
    return save_item_side(
        out_dir,
        table,
        parts,
        mf,
        fit_model(validation, FULL, settings.c),
        fit_model(validation, ITEMS_ONLY, settings.c),
        meta={
            "fitted": fitted,
            "items_until": int(until),
            "user_layout": list(user_layout(settings.mf.factors)),
            "settings": {
                "prior_strength": settings.prior_strength,
                "user_strength": settings.user_strength,
                "factors": settings.mf.factors,
                "regularization": settings.mf.regularization,
            },
        },
    )


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
