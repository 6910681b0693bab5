"""The evaluated split: who is judged, at which cutoff, against what, and what models may see.

`test` uses the configured cutoff (each user's midpoint by default, `model.data.splits`), as the
training curriculum does: training windows and Swing never look past it. `validation` moves the
cutoff earlier (the same spec applied to the events up to the test cutoff, or one horizon back
for an absolute date) and cuts everything after the test cutoff away, so tuning on it never sees
the reported future.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from codebook.artifact import ItemSIDTable
from model.data.splits import UserWindow, cutoffs_for, user_windows, validation_spec
from model.evaluation.candidates import CandidateSet, candidate_sets
from model.evaluation.metrics import summarize, topk_hits
from model.evaluation.users import EvalUser, eval_users, negative_counts, visible_events

SPLITS = ("test", "validation")


@dataclass(frozen=True)
class EvalSplit:
    name: str
    cutoffs: pd.Series  # user_id -> cutoff
    visible: pd.DataFrame  # every user's events up to their cutoff: what models learn from
    windows: list[UserWindow]
    users: list[EvalUser]  # aligned with windows
    candidates: list[CandidateSet]
    candidates_skipped: int

    @classmethod
    def build(
        cls,
        events: pd.DataFrame,
        item_sids: ItemSIDTable,
        name: str = "test",
        cutoff: str = "midpoint",
    ) -> EvalSplit:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        cutoffs = cutoffs_for(events, cutoff)
        if name == "validation":
            events = visible_events(events, cutoffs)
            cutoffs = cutoffs_for(events, validation_spec(cutoff))
        visible = visible_events(events, cutoffs)
        windows = list(user_windows(events, cutoffs))
        users = eval_users(windows, item_sids, negative_counts(visible))
        candidates, skipped = candidate_sets(events, windows, item_sids)
        return cls(name, cutoffs, visible, windows, users, candidates, skipped)

    def populations(self) -> dict[str, int]:
        """How many users each metric is computed over, and how many Candidate-Accuracy sets."""
        sizes = {name: row["n"] for name, row in summarize(topk_hits(self.users, {})).items()}
        return {
            "users": len(self.users),
            **sizes,
            "cand_acc": len(self.candidates),
            "cand_acc_skipped": self.candidates_skipped,
        }
