"""Candidate-Accuracy sets (paper section 4): the true next negative among 19 distractors.

Distractors come from the same user's non-negative events closest in time to the next negative:
exposures first, then positives, each ordered by |ts - ts(next negative)|. An item the user
gave negative feedback to at any time is never a distractor, nor is an item whose SID equals the
answer's or another distractor's (the LLM scores SIDs, so two equal SIDs could not be told
apart). Users with fewer than `size - 1` distractors are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from conrec.codebook.artifact import ItemSIDTable
from conrec.model.data.splits import UserWindow
from conrec.model.data.tables import Polarity

CANDIDATES = 20
_POLARITY_ORDER = {Polarity.EXPOSURE.value: 0, Polarity.POS.value: 1}


@dataclass(frozen=True)
class CandidateSet:
    """One user's candidates, the true next negative first."""

    user_id: str
    items: tuple[str, ...]


def candidate_sets(
    events: pd.DataFrame,
    windows: Iterable[UserWindow],
    item_sids: ItemSIDTable,
    size: int = CANDIDATES,
) -> tuple[list[CandidateSet], int]:
    """(sets, users skipped for too few distractors) for every window with a next negative."""
    by_user = {user: frame for user, frame in events.groupby("user_id", sort=False)}
    out, skipped = [], 0
    for w in windows:
        answer_sid = item_sids.sid_of(w.next_negative) if w.next_negative else None
        if answer_sid is None:
            continue
        distractors = _distractors(by_user[w.user_id], w, answer_sid, item_sids, size - 1)
        if len(distractors) < size - 1:
            skipped += 1
            continue
        out.append(CandidateSet(w.user_id, (w.next_negative, *distractors)))
    return out, skipped


def _distractors(
    events: pd.DataFrame, w: UserWindow, answer_sid, item_sids: ItemSIDTable, count: int
) -> list[str]:
    after = events[(events["ts"] > w.cutoff) & (events["item_id"] == w.next_negative)]
    answer_ts = int(after["ts"].iloc[0])
    disliked = set(events.loc[events["polarity"] == Polarity.NEG, "item_id"])
    pool = events[
        events["polarity"].isin(list(_POLARITY_ORDER)) & ~events["item_id"].isin(disliked)
    ]
    order = np.lexsort(
        (
            pool["item_id"].to_numpy(),
            np.abs(pool["ts"].to_numpy() - answer_ts),
            pool["polarity"].map(_POLARITY_ORDER).to_numpy(),
        )
    )
    picked: list[str] = []
    used = {answer_sid}
    for item in pool["item_id"].to_numpy()[order].tolist():
        sid = item_sids.sid_of(item)
        if sid is None or sid in used:
            continue
        used.add(sid)
        picked.append(item)
        if len(picked) == count:
            break
    return picked
