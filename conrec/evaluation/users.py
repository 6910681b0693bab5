"""Evaluation users: what each user's top-k is judged against, as SIDs (a hit is an exact match).

For a user and cutoff t (the data layer's `UserWindow`):
- next negative: the first negative after t (HR@k);
- future negatives: the negatives in (t, t + 7 days] (FHR@k, LUF@k);
- long-tail future negatives: those on items with fewer than `longtail_max` negatives among all
  users' events up to t (the time-consistent protocol, `conrec.model.data.visibility`) (LIF@k);
- seen: SIDs of every item in the user's history; the evaluation excludes them from every
  model's top-k (a user rates an item once, so a seen item can never be a future negative).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from conrec.codebook.artifact import ItemSIDTable
from conrec.model.data.splits import UserWindow
from conrec.model.data.tables import Polarity
from conrec.model.data.visibility import EventLog
from conrec.model.sids import SID

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


def own_history_events(events: pd.DataFrame, cutoffs: pd.Series) -> pd.DataFrame:
    """Every user's events up to that user's own cutoff (the validation split's data: what
    each event's owner had done by their test cutoff)."""
    limit = events["user_id"].map(cutoffs)
    return events[limit.notna() & (events["ts"] <= limit)]


def eval_users(
    windows: Iterable[UserWindow],
    item_sids: ItemSIDTable,
    log: EventLog,
    longtail_max: int = LONGTAIL_MAX_NEGATIVES,
) -> list[EvalUser]:
    """One `EvalUser` per window; items without a SID are left out of every set. `log` holds
    the items in `item_sids` order; the long tail is counted up to each user's cutoff."""

    def sids(items: Iterable[str]) -> frozenset[SID]:
        return frozenset(s for s in map(item_sids.sid_of, items) if s is not None)

    counts_at: dict[int, np.ndarray] = {}
    out = []
    for w in windows:
        if w.cutoff not in counts_at:
            counts_at[w.cutoff] = log.counts(w.cutoff, Polarity.NEG)
        counts = counts_at[w.cutoff]
        rows = item_sids.rows_of(list(w.future_negatives))
        longtail = [
            item
            for item, row in zip(w.future_negatives, rows.tolist(), strict=True)
            if row < 0 or counts[row] < longtail_max
        ]
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
