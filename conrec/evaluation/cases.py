"""Each user's real next seven days as `DecisionCase`s, scored the way a row decides.

The population is every user with a future negative or positive (the future positives that
are also negatives count as negatives). Two ways to score:

- `served_cases`: the service's own rule, the max cosine of a candidate's decoded SID to the
  user's predicted SIDs (`conrec.codebook.similarity.max_cosine`); a user without a prediction, or
  an item without a SID, scores -inf, i.e. is kept, as the service fails open;
- `scored_cases`: a reference scorer's own score of every catalogue item (e.g. an item's
  dislike prior); items outside the catalogue score -inf;
- `calibrated_cases`: the service's calibrated score, P(dislike) from a calibration artifact and
  each user's part stored with their prediction (the items-only model without one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from conrec.codebook.artifact import Codebook, ItemSIDTable
from conrec.codebook.calibration import AlignedItems, prefix_depth
from conrec.codebook.similarity import max_cosine
from conrec.evaluation.decision import DecisionCase
from conrec.model.data.splits import UserWindow


def future_sets(w: UserWindow) -> tuple[list[str], list[str], list[str]]:
    """The user's distinct future negatives, positives that are not also negatives, and other
    future items (exposures), each sorted."""
    neg = set(w.future_negatives)
    pos = set(w.future_positives) - neg
    others = set(w.future_exposures) - neg - pos
    return sorted(neg), sorted(pos), sorted(others)


def decision_population(windows: Iterable[UserWindow]) -> list[UserWindow]:
    """The users a decision is judged on: those with a future negative or positive."""
    return [w for w in windows if w.future_negatives or w.future_positives]


def _cases(
    windows: Iterable[UserWindow], score: Callable[[UserWindow, list[str]], np.ndarray]
) -> list[DecisionCase]:
    out = []
    for w in decision_population(windows):
        neg, pos, others = future_sets(w)
        out.append(DecisionCase(w.user_id, score(w, neg), score(w, pos), score(w, others)))
    return out


def served_cases(
    windows: Iterable[UserWindow],
    predictions: Mapping[str, np.ndarray],
    codebook: Codebook,
    item_sids: ItemSIDTable,
) -> list[DecisionCase]:
    """Cases scored by the max cosine to each user's predicted SIDs ([K, D] codes)."""

    def score(w: UserWindow, items: list[str]) -> np.ndarray:
        pred = predictions.get(w.user_id)
        rows = item_sids.rows_of(items)
        out = np.full(len(items), -np.inf)
        known = rows >= 0
        if pred is not None and len(pred) and known.any():
            codes = item_sids.codes[rows[known]].astype(np.int64)
            out[known] = max_cosine(codebook, codes, np.asarray(pred, dtype=np.int64))
        return out

    return _cases(windows, score)


def scored_cases(
    windows: Iterable[UserWindow],
    scores: Mapping[str, np.ndarray],
    item_ids: Sequence[str],
) -> list[DecisionCase]:
    """Cases scored by a row's own [n_items] score per user, items in `item_ids` order."""
    index = {item: row for row, item in enumerate(item_ids)}

    def score(w: UserWindow, items: list[str]) -> np.ndarray:
        vector = scores.get(w.user_id)
        out = np.full(len(items), -np.inf)
        if vector is None:
            return out
        for i, item in enumerate(items):
            row = index.get(item)
            if row is not None:
                out[i] = vector[row]
        return out

    return _cases(windows, score)


def history_predictions(
    windows: Iterable[UserWindow], item_sids: ItemSIDTable, size: int = 20
) -> dict[str, np.ndarray]:
    """The filter without a model: each user's own `size` most recent negatives up to their
    cutoff, as [K, D] codes, the prediction set the served path compares candidates with."""
    out = {}
    for w in windows:
        rows = item_sids.rows_of(w.negatives()[::-1])
        rows = rows[rows >= 0][:size]
        if len(rows):
            out[w.user_id] = item_sids.codes[rows].astype(np.int64)
    return out


def calibrated_cases(
    windows: Iterable[UserWindow],
    predictions: Mapping[str, np.ndarray],
    user_parts: Mapping[str, np.ndarray],
    aligned: AlignedItems,
    codebook: Codebook,
    item_sids: ItemSIDTable,
) -> list[DecisionCase]:
    """Cases scored as a `score: calibrated` surface scores them: with the user's prediction
    ([K, D] codes) and per-user part when both exist, else by the item features alone."""

    def score(w: UserWindow, items: list[str]) -> np.ndarray:
        rows = item_sids.rows_of(items)
        out = np.full(len(items), -np.inf)
        known = rows >= 0
        if not known.any():
            return out
        codes = item_sids.codes[rows[known]].astype(np.int64)
        first = codes[:, 0]
        pred, part = predictions.get(w.user_id), user_parts.get(w.user_id)
        if pred is None or part is None or not len(pred):
            out[known] = aligned.score(rows[known], first)
            return out
        pred = np.asarray(pred, dtype=np.int64)
        cosine, depth = max_cosine(codebook, codes, pred), prefix_depth(codes, pred)
        out[known] = aligned.score(rows[known], first, cosine, depth, part)
        return out

    return _cases(windows, score)
