"""The calibrated score's features (`conrec.codebook.calibration`) that a nightly run refreshes: the
per-item features from every event up to its cutoff, the factorisation's item side, and each
user's part stored with the user's prediction. (The score's fit on an evaluation split is
`conrec.evaluation.calibrated`.)

The factorisation behind the `mf` feature is `conrec.model.mf` (neg -1, exposure 0, pos +1), its
item side fitted on every event up to the cutoff, each user folded in from their own history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from conrec.codebook.artifact import ItemSIDTable
from conrec.codebook.calibration import LogisticModel, save_calibration
from conrec.model.data.splits import UserWindow
from conrec.model.data.tables import Polarity
from conrec.model.data.visibility import EventLog
from conrec.model.mf import MatrixFactorization, MFConfig

Fit = Literal["within_user", "pooled"]


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
    fit: Fit = field(
        default="within_user",
        metadata={
            "help": "within_user: the weights that order a user's candidates from each user's "
            "own negatives against positives, then scaled with the user-level terms over "
            "every pair; pooled: one regression over every pair."
        },
    )


@dataclass(frozen=True)
class ItemParts:
    features: np.ndarray  # [N, 2] prior_lift, log_feedback
    prefix: np.ndarray  # [size, 2] mean features of the items with feedback, by first code
    share: float  # the catalogue's share of negatives


def item_parts(log: EventLog, until: int, table: ItemSIDTable, size: int, strength: float):
    """The per-item features from every event up to `until` (`log` indexes `table`'s items):
    the prior lift, each item's smoothed share of negatives less the catalogue's, and its
    feedback count."""
    neg, total = log.counts(until, Polarity.NEG), log.counts(until, None)
    share = float(neg.sum() / total.sum()) if total.sum() else 0.0
    prior = (neg + strength * share) / (total + strength)
    features = np.column_stack([prior - share, np.log1p(total)])
    prefix = np.zeros((size, 2))
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
        full=full,
        items_only=items_only,
        meta=meta,
    )
