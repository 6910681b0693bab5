"""Each baseline's tuning budget, and choosing within it on the validation split.

The grids are small on purpose and stated in the results: a baseline gets the same kind of
care as the model (its few natural knobs, chosen on an earlier cutoff), never the test split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from model.evaluation.baselines import (
    Baseline,
    Catalogue,
    CategoryBlocker,
    PopularityBaseline,
    RandomBaseline,
    SwingBaseline,
    top_sids,
)
from model.evaluation.metrics import summarize, topk_hits
from model.evaluation.split import EvalSplit
from model.sids import SID
from model.swing import SwingConfig

GRIDS: dict[str, tuple] = {
    "random": (None,),
    "popularity": (None,),
    "category_blocker": CategoryBlocker.VARIANTS,
    "swing": SwingBaseline.MIN_COMMON_USERS,
    "sasrec": (20, 60),  # epochs
}
GRID_MEANING = {
    "category_blocker": "variant",
    "swing": "min_common_users",
    "sasrec": "epochs",
}


def make_baseline(name: str, catalogue: Catalogue, choice=None, seed: int = 0) -> Baseline:
    """A baseline by name, at one point of its grid."""
    if name == "random":
        return RandomBaseline(catalogue, seed=seed)
    if name == "popularity":
        return PopularityBaseline(catalogue)
    if name == "category_blocker":
        return CategoryBlocker(catalogue, variant=choice or "weighted")
    if name == "swing":
        config = SwingConfig(top_k=100, min_common_users=5 if choice is None else choice)
        return SwingBaseline(catalogue, config)
    if name == "sasrec":
        from model.evaluation.sasrec import SASRecBaseline, SASRecConfig

        config = SASRecConfig(seed=seed)
        return SASRecBaseline(catalogue, dataclasses.replace(config, epochs=choice or 20))
    raise ValueError(f"unknown baseline {name!r}; baselines are {list(GRIDS)}")


def baseline_outputs(
    baseline: Baseline, split: EvalSplit, catalogue: Catalogue, k: int = 20
) -> tuple[dict[str, list[SID]], list]:
    """Fit on the split's visible events; (user -> top-k SIDs, candidate scores per set)."""
    baseline.fit(split.visible)
    predictions, scores_by_user = {}, {}
    for window, user in zip(split.windows, split.users, strict=True):
        scores = baseline.scores(window)
        scores_by_user[user.user_id] = scores
        predictions[user.user_id] = top_sids(scores, catalogue, user.seen, k)
    candidates = [
        scores_by_user[c.user_id][catalogue.index(list(c.items))] for c in split.candidates
    ]
    return predictions, candidates


def tune(
    name: str, validation: EvalSplit, catalogue: Catalogue, k: int = 20
) -> tuple[object, Mapping[str, float]]:
    """(the grid point with the best validation FHR@k, FHR@k of every point)."""
    fhr = {}
    for choice in GRIDS[name]:
        predictions, _ = baseline_outputs(make_baseline(name, catalogue, choice), validation,
                                          catalogue, k)  # fmt: skip
        fhr[str(choice)] = summarize(topk_hits(validation.users, predictions, k))["fhr"]["value"]
    best = max(GRIDS[name], key=lambda c: fhr[str(c)])
    return best, fhr
