"""Evaluation users: what each user's top-k is judged against, as SIDs (a hit is an exact match).

For a user and cutoff t (the data layer's `UserWindow`):
- next negative: the first negative after t (HR@k);
- future negatives: the negatives in (t, t + 7 days] (FHR@k, LUF@k);
- long-tail future negatives: those on items with fewer than `longtail_max` negatives across all
  users' visible events (each user's events up to their own cutoff) (LIF@k);
- seen: SIDs of every item in the user's history; the evaluation excludes them from every
  model's top-k (a user rates an item once, so a seen item can never be a future negative).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from codebook.artifact import ItemSIDTable
from model.data.splits import UserWindow
from model.data.tables import Polarity
from model.sids import SID

LONGTAIL_MAX_NEGATIVES = 5
LONGTAIL_USER_MAX_NEGATIVES = 3


@dataclass(frozen=True)
class EvalUser:
    user_id: str
    history_negatives: int
    next_negative: SID | None
    future_negatives: frozenset[SID]
    longtail_future_negatives: frozenset[SID]
    seen: frozenset[SID]


def visible_events(events: pd.DataFrame, cutoffs: pd.Series) -> pd.DataFrame:
    """Every user's events up to that user's own cutoff: all a model may learn from."""
    limit = events["user_id"].map(cutoffs)
    return events[limit.notna() & (events["ts"] <= limit)]


def negative_counts(visible: pd.DataFrame) -> pd.Series:
    """item_id -> number of negatives on it in `visible`."""
    return visible.loc[visible["polarity"] == Polarity.NEG, "item_id"].value_counts()


def eval_users(
    windows: Iterable[UserWindow],
    item_sids: ItemSIDTable,
    negatives_per_item: pd.Series,
    longtail_max: int = LONGTAIL_MAX_NEGATIVES,
) -> list[EvalUser]:
    """One `EvalUser` per window; items without a SID are left out of every set."""
    counts = negatives_per_item.to_dict()

    def sids(items: Iterable[str]) -> frozenset[SID]:
        return frozenset(s for s in map(item_sids.sid_of, items) if s is not None)

    out = []
    for w in windows:
        longtail = [i for i in w.future_negatives if counts.get(i, 0) < longtail_max]
        out.append(
            EvalUser(
                user_id=w.user_id,
                history_negatives=len(w.negatives()),
                next_negative=item_sids.sid_of(w.next_negative) if w.next_negative else None,
                future_negatives=sids(w.future_negatives),
                longtail_future_negatives=sids(longtail),
                seen=sids(w.history_items.tolist()),
            )
        )
    return out
