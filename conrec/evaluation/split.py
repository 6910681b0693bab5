"""The evaluated split: who is judged, at which cutoff, against what, and what models may see.

`test` uses the configured cutoff (each user's midpoint by default, `conrec.model.data.splits`), as
the training curriculum does: training windows and Swing never look past it. `validation` keeps only
the events visible at test time (each event up to its owner's test cutoff) and applies the
cutoff spec again to them (or one horizon back for an absolute date), so tuning on it never sees
the reported future.

On either split, a user with cutoff t is scored by models that saw every event with ts <= t and
none after it (`conrec.model.data.visibility`): `log` is the split's events in time order, and
models fitted once per bucket of cutoffs use `buckets` of them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from conrec.codebook.artifact import ItemSIDTable
from conrec.evaluation.candidates import CandidateSet, candidate_sets
from conrec.evaluation.list_metrics import summarize, topk_hits
from conrec.evaluation.users import EvalUser, eval_users, own_history_events
from conrec.model.data.splits import UserWindow, cutoffs_for, user_windows, validation_spec
from conrec.model.data.visibility import EventLog

Split = Literal["test", "validation"]
SPLITS: tuple[Split, ...] = typing.get_args(Split)
# Fits per split of the baselines that are models (Swing, the factorisation, SASRec).
DEFAULT_BUCKETS = 8


@dataclass(frozen=True)
class EvalSplit:
    name: str
    cutoffs: pd.Series  # user_id -> cutoff
    log: EventLog  # the split's events in time order: a model at t sees its prefix up to t
    buckets: int
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
        buckets: int = DEFAULT_BUCKETS,
    ) -> EvalSplit:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        cutoffs = cutoffs_for(events, cutoff)
        if name == "validation":
            events = own_history_events(events, cutoffs)
            cutoffs = cutoffs_for(events, validation_spec(cutoff))
        return cls.at(events, item_sids, cutoffs, name, buckets)

    @classmethod
    def at(
        cls,
        events: pd.DataFrame,
        item_sids: ItemSIDTable,
        cutoffs: pd.Series,
        name: str = "test",
        buckets: int = DEFAULT_BUCKETS,
    ) -> EvalSplit:
        """The split of the users in `cutoffs` (user_id -> ts), judged on `events`."""
        log = EventLog.of(events, item_sids.item_ids.tolist())
        windows = list(user_windows(events, cutoffs))
        users = eval_users(windows, item_sids, log)
        candidates, skipped = candidate_sets(events, windows, item_sids)
        return cls(name, cutoffs, log, buckets, windows, users, candidates, skipped)

    def populations(self) -> dict[str, int]:
        """How many users each metric is computed over, and how many Candidate-Accuracy sets."""
        sizes = {name: row["n"] for name, row in summarize(topk_hits(self.users, {})).items()}
        return {
            "users": len(self.users),
            **sizes,
            "cand_acc": len(self.candidates),
            "cand_acc_skipped": self.candidates_skipped,
        }
