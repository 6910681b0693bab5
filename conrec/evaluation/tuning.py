"""Each baseline's tuning budget, fitting it under the time-consistent protocol, and choosing
within its budget on the validation split.

The grids are small on purpose and stated in the results: a baseline gets the same kind of
care as the model (its few natural knobs, chosen on an earlier cutoff), never the test split.
List baselines are chosen by validation FHR@20; the reference scorers whose worth is the
decision (the dislike prior, the factorisation) by validation negatives caught at 10% of
positives lost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from conrec.evaluation.baselines import (
    Baseline,
    Catalogue,
    CategoryBlocker,
    DislikePrior,
    FactorizationBaseline,
    PopularityBaseline,
    RandomBaseline,
    SwingBaseline,
    top_sids,
)
from conrec.evaluation.cases import scored_cases
from conrec.evaluation.decision import DecisionCase, rates, threshold_at
from conrec.evaluation.list_metrics import summarize, topk_hits
from conrec.evaluation.split import EvalSplit
from conrec.model.data.visibility import refit_schedule
from conrec.model.mf import MFConfig
from conrec.model.sids import SID
from conrec.model.swing import SwingConfig

GRIDS: dict[str, tuple] = {
    "random": (None,),
    "popularity": (None,),
    "popularity_recent": PopularityBaseline.WINDOWS,
    "dislike_prior": DislikePrior.STRENGTHS,
    "category_blocker": CategoryBlocker.VARIANTS,
    "swing": SwingBaseline.MIN_COMMON_USERS,
    "factorization": FactorizationBaseline.GRID,
    "sasrec": (20, 60),  # epochs
}
GRID_MEANING = {
    "popularity_recent": "window_days",
    "dislike_prior": "strength",
    "category_blocker": "variant",
    "swing": "min_common_users",
    "factorization": "(factors, regularization)",
    "sasrec": "epochs",
}
# Chosen by the decision they hand a ranking service rather than by their top-20.
DECISION_TUNED = ("dislike_prior", "factorization")


def make_baseline(name: str, catalogue: Catalogue, choice=None, seed: int = 0) -> Baseline:
    """A baseline by name, at one point of its grid."""
    if name == "random":
        return RandomBaseline(catalogue, seed=seed)
    if name == "popularity":
        return PopularityBaseline(catalogue)
    if name == "popularity_recent":
        return PopularityBaseline(catalogue, window_days=choice or 30)
    if name == "dislike_prior":
        return DislikePrior(catalogue, strength=choice or 5.0)
    if name == "category_blocker":
        return CategoryBlocker(catalogue, variant=choice or "weighted")
    if name == "swing":
        config = SwingConfig(top_k=100, min_common_users=5 if choice is None else choice)
        return SwingBaseline(catalogue, config)
    if name == "factorization":
        factors, reg = choice or FactorizationBaseline.GRID[1]
        config = MFConfig(factors=int(factors), regularization=float(reg), seed=seed)
        return FactorizationBaseline(catalogue, config)
    if name == "sasrec":
        from conrec.evaluation.sasrec import SASRecBaseline, SASRecConfig

        config = SASRecConfig(seed=seed)
        return SASRecBaseline(catalogue, dataclasses.replace(config, epochs=choice or 20))
    raise ValueError(f"unknown baseline {name!r}; baselines are {list(GRIDS)}")


@dataclass
class BaselineOutputs:
    """What one fitted baseline gives on a split."""

    predictions: dict[str, list[SID]]  # user -> top-k SIDs, seen items excluded
    candidate_scores: list[np.ndarray]  # per Candidate-Accuracy set, its own scores
    cases: list[DecisionCase]  # its own score of each user's future items


def baseline_outputs(
    baseline: Baseline, split: EvalSplit, catalogue: Catalogue, k: int = 20
) -> BaselineOutputs:
    """Fit and score every user of the split, each by a fit that saw only events up to their
    cutoff (`visibility.refit_schedule`: exact baselines at every cutoff, the others per bucket)."""
    windows = {w.user_id: (w, u) for w, u in zip(split.windows, split.users, strict=True)}
    buckets = split.buckets if baseline.max_fits is None else min(split.buckets, baseline.max_fits)
    schedule = refit_schedule(split.cutoffs, None if baseline.exact else buckets)
    predictions, scores_by_user = {}, {}
    for point in schedule:
        users = [u for u in point.users if u in windows]
        if not users:
            continue
        baseline.fit(split.log, point.until)
        for user_id in users:
            window, user = windows[user_id]
            scores = np.asarray(baseline.scores(window), dtype=np.float64)
            scores_by_user[user_id] = scores
            predictions[user_id] = top_sids(scores, catalogue, user.seen, k)
    candidates = [
        scores_by_user[c.user_id][catalogue.index(list(c.items))] for c in split.candidates
    ]
    cases = scored_cases(split.windows, scores_by_user, catalogue.item_ids.tolist())
    return BaselineOutputs(predictions, candidates, cases)


def tune(
    name: str, validation: EvalSplit, catalogue: Catalogue, k: int = 20
) -> tuple[object, Mapping[str, float]]:
    """(the grid point with the best validation figure, that figure at every point): FHR@k,
    or negatives caught at 10% of positives lost for `DECISION_TUNED` scorers."""
    figure = {}
    for choice in GRIDS[name]:
        out = baseline_outputs(make_baseline(name, catalogue, choice), validation, catalogue, k)
        if name in DECISION_TUNED:
            figure[str(choice)] = rates(out.cases, threshold_at(out.cases, 0.10))[0]
        else:
            hits = topk_hits(validation.users, out.predictions, k)
            figure[str(choice)] = summarize(hits)["fhr"]["value"]
    best = max(GRIDS[name], key=lambda c: figure[str(c)])
    return best, figure
