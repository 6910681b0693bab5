"""Fitting the calibrated score (`codebook.calibration`): its features under the time-consistent
protocol, a logistic regression fitted on the validation split, and the parts a nightly run
refreshes (the per-item features at its cutoff, and each user's part stored with the user's
prediction).

The factorisation behind the `mf` feature is `model.evaluation.mf` (neg -1, exposure 0, pos +1),
its item side fitted on every event up to the cutoff, each user folded in from their own history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from codebook.artifact import Codebook, ItemSIDTable
from codebook.calibration import (
    FEATURES,
    ITEM_FEATURES,
    LogisticModel,
    prefix_depth,
    save_calibration,
    user_layout,
)
from codebook.similarity import max_cosine
from model.data.splits import UserWindow
from model.data.tables import Polarity
from model.evaluation.cases import decision_population, future_sets
from model.evaluation.decision import DecisionCase
from model.evaluation.mf import MatrixFactorization, MFConfig
from model.evaluation.split import EvalSplit
from model.evaluation.visibility import EventLog, refit_schedule

# The rows (candidates) of a decision case, by future set.
KINDS = ("negatives", "positives", "others")


@dataclass(frozen=True)
class CalibrationSettings:
    prior_strength: float = field(
        default=5.0, metadata={"help": "Pseudo-events smoothing an item's share of negatives."}
    )
    user_strength: float = field(
        default=2.0, metadata={"help": "Pseudo-events smoothing a user's share of negatives."}
    )
    mf: MFConfig = field(default_factory=MFConfig, metadata={"help": "The factorisation."})
    c: float = field(default=1.0, metadata={"help": "Inverse L2 strength of the regression."})


@dataclass(frozen=True)
class ItemParts:
    features: np.ndarray  # [N, 2] prior, log_feedback
    prefix: np.ndarray  # [size, 2] mean features of the items with feedback, by first code
    share: float  # the catalogue's share of negatives


def item_parts(log: EventLog, until: int, table: ItemSIDTable, size: int, strength: float):
    """The per-item features from every event up to `until` (`log` indexes `table`'s items)."""
    neg, total = log.counts(until, Polarity.NEG), log.counts(until, None)
    share = float(neg.sum() / total.sum()) if total.sum() else 0.0
    features = np.column_stack([(neg + strength * share) / (total + strength), np.log1p(total)])
    prefix = np.tile([share, 0.0], (size, 1))
    first = table.codes[:, 0].astype(np.int64)
    rated = total > 0
    for code in np.unique(first[rated]):
        prefix[code] = features[rated & (first == code)].mean(axis=0)
    return ItemParts(features, prefix, share)


def user_dislike(window: UserWindow, share: float, strength: float) -> float:
    """The user's share of negatives in their history, smoothed toward the catalogue's."""
    negatives = float((window.history_polarity == Polarity.NEG).sum())
    return (negatives + strength * share) / (len(window.history_polarity) + strength)


def user_part(
    window: UserWindow, rows: np.ndarray, mf: MatrixFactorization, share: float, strength: float
) -> np.ndarray:
    """The per-user features stored with a prediction (`user_layout`): the user's smoothed
    share of negatives, and their factorisation bias and factors folded in from `rows` (their
    history's items in the factorisation's index)."""
    factors, bias = mf.fold_in(rows, window.history_polarity)
    dislike = user_dislike(window, share, strength)
    return np.concatenate([[dislike, bias], factors]).astype(np.float32)


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
            rating[u] = mf.mean + bias + mf.item_bias[r] + mf.item_factors[r] @ factors
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


def fit_item_side(
    log: EventLog, until: int, table: ItemSIDTable, size: int, prior_strength: float, mf: MFConfig
) -> tuple[ItemParts, MatrixFactorization]:
    """The per-item features and the factorisation, from every event up to `until`."""
    model = MatrixFactorization(len(table), mf)
    model.fit_until(log, until)
    return item_parts(log, until, table, size, prior_strength), model


def save_item_side(
    out_dir,
    table: ItemSIDTable,
    parts: ItemParts,
    mf: MatrixFactorization,
    full: LogisticModel,
    items_only: LogisticModel,
    meta: dict,
) -> str:
    """Write the calibration artifact: fitted models, and the item side at its cutoff."""
    return save_calibration(
        out_dir,
        codebook_version=table.codebook_version,
        item_ids=table.item_ids,
        item_features=parts.features,
        prefix_features=parts.prefix,
        mf_items=np.column_stack([mf.item_factors, mf.item_bias]),
        mf_mean=mf.mean,
        full=full,
        items_only=items_only,
        meta=meta,
    )


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
