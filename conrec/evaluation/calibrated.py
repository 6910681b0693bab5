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
  dislike rate, the factorisation);

and one row for the fit itself, `calibrated_pooled`: the shipped set's pairs with every weight
from one regression over all pairs, against the within-user fit (`fit_model`).

The shipped artifact (`calibration.npz` in the output folder) is the first, fitted with the
served row's validation predictions, its per-item parts at the last event of the data.
"""

from __future__ import annotations

import dataclasses
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


def fit_model(
    pairs: Pairs, columns: Sequence[int], settings: CalibrationSettings | None = None
) -> LogisticModel:
    """A logistic regression of negative (1) against positive (0) on the chosen feature
    columns, standardised (scikit-learn, L2 of strength ``settings.c``), fitted as
    ``settings.fit`` says.

    ``pooled``: one regression over every pair. ``within_user``: the weights of the features
    that vary within a user's candidates come from each user's own negatives against their
    positives (`within_user_direction`, a conditional logit: its weights are log-odds within a
    user), so that what differs between users (how much they dislike, which items they are
    shown) does not bend the order of one user's candidates; the user-level features and the
    intercept are then fitted over every pair with that part held fixed (an offset), so the
    output stays a probability that one threshold serves every user by. Both are one linear
    model on the columns (the artifact's form)."""
    from sklearn.linear_model import LogisticRegression

    settings = settings or CalibrationSettings()
    c = settings.c
    keep = (pairs.kinds < 2) & pairs.scored
    x = pairs.features[keep][:, list(columns)]
    y = (pairs.kinds[keep] == 0).astype(np.int64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    x = (x - mean) / scale
    groups = np.repeat(np.arange(len(pairs.counts)), [sum(n) for n in pairs.counts])[keep]
    user_level = _constant_within(x, groups)
    direction = None
    if settings.fit == "within_user" and not user_level.all():
        direction = within_user_direction(x[:, ~user_level], y, groups, c)
    if direction is None:
        model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
        return LogisticModel(model.coef_[0], float(model.intercept_[0]), mean, scale)
    weights = np.zeros(x.shape[1])
    weights[~user_level] = direction
    weights[user_level], intercept = offset_logistic(
        x[:, user_level], y, x[:, ~user_level] @ direction, c
    )
    return LogisticModel(weights, intercept, mean, scale)


def offset_logistic(
    x: np.ndarray, y: np.ndarray, offset: np.ndarray, c: float
) -> tuple[np.ndarray, float]:
    """Weights and intercept of P(y) = sigmoid(offset + x @ w + b), L2 on w as scikit-learn
    puts it (|w|^2 / 2 + c * log-loss), by Newton's method: scikit-learn has no offset."""
    design = np.column_stack([x, np.ones(len(y))])
    penalty = np.r_[np.full(x.shape[1], 1.0 / c), 0.0]
    theta = np.zeros(design.shape[1])
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * (offset + design @ theta)))  # the sigmoid, no overflow
        gradient = design.T @ (p - y) + penalty * theta
        hessian = (design * (p * (1.0 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return theta[:-1], float(theta[-1])


# A user's pairs in the within-user fit, at most: a few heavy users must not outweigh the rest
# (each user's pairs also weigh 1 in total, as the within-user AUC averages over users).
MAX_PAIRS_PER_USER = 400


def within_user_direction(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float, seed: int = 0
) -> np.ndarray | None:
    """Weights [f] that order each user's negatives above their positives: a logistic
    regression, without intercept, of (negative - positive) feature differences within each
    user (``groups``, contiguous) against their reverses. None when no user has both a negative
    and a positive."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    differences, weights = [], []
    for at in np.split(np.arange(len(y)), np.flatnonzero(np.diff(groups)) + 1):
        negatives, positives = at[y[at] == 1], at[y[at] == 0]
        if not len(negatives) or not len(positives):
            continue
        n = len(negatives) * len(positives)
        picked = np.arange(n)
        if n > MAX_PAIRS_PER_USER:
            picked = rng.choice(n, MAX_PAIRS_PER_USER, replace=False)
        negative, positive = negatives[picked // len(positives)], positives[picked % len(positives)]
        differences.append(x[negative] - x[positive])
        weights.append(np.full(len(picked), 1.0 / len(picked)))
    if not differences:
        return None
    d, w = np.concatenate(differences), np.concatenate(weights)
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=1000).fit(
        np.concatenate([d, -d]), np.repeat([1, 0], len(d)), sample_weight=np.concatenate([w, w])
    )
    return model.coef_[0]


def _constant_within(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """[f] bool: the columns that take one value within each group (user-level features)."""
    first = np.flatnonzero(np.r_[True, np.diff(groups) != 0])
    spread = np.abs(x - np.repeat(x[first], np.diff(np.r_[first, len(x)]), axis=0))
    return spread.max(axis=0, initial=0.0) < 1e-9


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
        fit_model(validation, FULL, settings),
        fit_model(validation, ITEMS_ONLY, settings),
        meta={
            "fitted": fitted,
            "items_until": int(until),
            "user_layout": list(user_layout(settings.mf.factors)),
            "settings": {
                "fit": settings.fit,
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
CALIBRATED_POOLED = "calibrated_pooled"
LABELS = {
    CALIBRATED: "calibrated P(dislike), CoNRec's predictions as the set",
    CALIBRATED_HISTORY: "calibrated P(dislike), the user's own last 20 negatives as the set",
    CALIBRATED_NO_SET: "calibrated P(dislike), no max-cosine features",
    CALIBRATED_POOLED: "calibrated P(dislike), the shipped set, fitted as one pooled regression",
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
    fitted: dict[str, tuple[Pairs, list[Pairs]]] = {}
    for name, (on_validation, on_test) in sets.items():
        fit = split_pairs(validation.split, validation.table, validation.codebook, on_validation,
                          settings)  # fmt: skip
        tests = [
            split_pairs(test.split, test.table, test.codebook, predictions, settings)
            for predictions in on_test
        ]
        fitted[name] = fit, tests
        rows[name] = _judged(fit, tests, FULL, settings)
        if name == CALIBRATED_HISTORY:  # no set feature enters it: any set's pairs will do
            rows[CALIBRATED_NO_SET] = _judged(fit, tests, WITHOUT_SET, settings)
    shipped = CALIBRATED if served else CALIBRATED_HISTORY
    # The fit's own ablation: the same pairs, every weight from one regression over all pairs.
    pooled = dataclasses.replace(settings, fit="pooled")
    rows[CALIBRATED_POOLED] = _judged(*fitted[shipped], FULL, pooled)
    write_calibration(
        out,
        fitted[shipped][0],
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
    model = fit_model(fit, columns, settings)
    chosen = fit.cases(score_pairs(model, fit, columns))
    results = [judge(pairs.cases(score_pairs(model, pairs, columns)), chosen) for pairs in tests]
    return merge_seeds(results), [r.auc for r in results]
