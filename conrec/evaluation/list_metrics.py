"""The paper's section-4 metrics as pure functions over evaluation users and predictions.

Per-user arrays keep the population explicit: `topk_hits` returns, for each metric, one value
per user: 1.0 for a hit, 0.0 for a miss, NaN where the user is outside that metric's population.
A metric is the NaN-mean of its array, its population size the count of non-NaN entries, and a
user bootstrap resamples rows of those arrays.

- HR@k: users with a next negative; hit if it is among the top k.
- FHR@k: users with >= 1 negative in the 7 days after the cutoff; hit if any is in the top k.
- LUF@k: FHR@k over users with fewer than 3 negatives up to their cutoff.
- LIF@k: users with >= 1 future negative on a long-tail item; hit if such an item is in the top k.
A user without a prediction is a miss. Candidate Accuracy (by a row's own score, and by the served
max cosine to its top-k): the answer is candidate 0 of each scored set; a tie for the best score
earns 1 / (number tied), so random scoring expects 1/20.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from conrec.evaluation.users import LONGTAIL_USER_MAX_NEGATIVES, EvalUser
from conrec.model.sids import SID

TOPK_METRICS = ("hr", "fhr", "luf", "lif")
# Candidate Accuracy by a row's own score (an LLM's likelihood, a baseline's score), and by the
# score the service serves: the max cosine of each candidate to the row's top-k.
CANDIDATE_METRIC = "cand_acc"
SERVED_CANDIDATE_METRIC = "cand_acc_served"


def topk_hits(
    users: Sequence[EvalUser], predictions: Mapping[str, Sequence[SID]], k: int = 20
) -> dict[str, np.ndarray]:
    """Per metric, a [len(users)] array of 1 (hit), 0 (miss) or NaN (not in the population)."""
    out = {name: np.full(len(users), np.nan) for name in TOPK_METRICS}
    for row, user in enumerate(users):
        top = {tuple(int(c) for c in sid) for sid in list(predictions.get(user.user_id, ()))[:k]}
        if user.next_negative is not None:
            out["hr"][row] = user.next_negative in top
        if user.future_negatives:
            hit = not top.isdisjoint(user.future_negatives)
            out["fhr"][row] = hit
            if user.history_negatives < LONGTAIL_USER_MAX_NEGATIVES:
                out["luf"][row] = hit
        if user.longtail_future_negatives:
            out["lif"][row] = not top.isdisjoint(user.longtail_future_negatives)
    return out


def candidate_hits(scores: Sequence[np.ndarray]) -> np.ndarray:
    """[len(scores)] credit per candidate set whose answer is element 0 of its scores."""
    out = np.zeros(len(scores))
    for row, s in enumerate(scores):
        s = np.asarray(s, dtype=np.float64)
        best = s.max()
        if s[0] == best:
            out[row] = 1.0 / np.count_nonzero(s == best)
    return out


def summarize(values: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{metric: {"value": NaN-mean, "n": population size}}."""
    out = {}
    for name, arr in values.items():
        n = int(np.count_nonzero(~np.isnan(arr)))
        out[name] = {"value": float(np.nanmean(arr)) if n else float("nan"), "n": n}
    return out


def bootstrap_interval(
    values: np.ndarray, reference: np.ndarray | None = None, *, draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% user-bootstrap interval of NaN-mean(values), or of its ratio to NaN-mean(reference).

    Rows are users; `values` and `reference` are resampled together (paired), so the interval
    of a ratio reflects that both models were judged on the same users.
    """
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(draws, len(values)))
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = _nanmean_rows(values[idx])
        if reference is not None:
            stat = stat / _nanmean_rows(np.asarray(reference, dtype=np.float64)[idx])
    lo, hi = np.nanpercentile(stat, [2.5, 97.5])
    return float(lo), float(hi)


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(x)
    return np.where(valid, x, 0.0).sum(axis=1) / valid.sum(axis=1)
