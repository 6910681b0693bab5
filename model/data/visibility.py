"""What a model may see for a user with cutoff t: every event with ts <= t, nobody's after it.

This is the time-consistent protocol (DESIGN section 3): a nightly job run at t sees every
user's events up to t. Statistics over all users (popularity, the dislike prior, Swing's graph,
factorisations, the long-tail item set) therefore depend on the cutoff, not on the union of
users' histories (which would drop other users' events between their own cutoff and t and
admit their events after t).

`EventLog` holds the split's events sorted by time once; a statistic at t is a prefix of it
(`upto`, `counts`). `refit_schedule` says when a baseline is fitted:

- a cheap statistic (counts, priors) is recomputed at every distinct cutoff: exact;
- a fitted model (Swing, a factorisation, SASRec) is fitted once per bucket of cutoffs, on the
  events up to the bucket's earliest cutoff, so it never sees past any of its users' cutoffs and
  lags them by less than the bucket's width. A user's own history is always read up to their own
  cutoff (`UserWindow`), so only the cross-user statistic lags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from conrec.model.data.tables import Polarity


@dataclass(frozen=True)
class EventLog:
    """Events sorted by time, with items as rows of a fixed item index."""

    events: pd.DataFrame  # sorted by ts (stable), index 0..n-1
    ts: np.ndarray  # [n] int64
    item_rows: np.ndarray  # [n] row of the item in `item_ids`, -1 for an item outside it
    polarity: np.ndarray  # [n] str
    n_items: int

    @classmethod
    def of(cls, events: pd.DataFrame, item_ids: Sequence[str]) -> EventLog:
        ordered = events.sort_values("ts", kind="stable").reset_index(drop=True)
        index = pd.Index(np.asarray(item_ids, dtype=str))
        rows = index.get_indexer(ordered["item_id"].astype(str))
        return cls(
            events=ordered,
            ts=ordered["ts"].to_numpy(dtype=np.int64),
            item_rows=rows.astype(np.int64),
            polarity=ordered["polarity"].to_numpy().astype(str),
            n_items=len(index),
        )

    def end(self, until: int) -> int:
        """Number of events with ts <= until."""
        return int(np.searchsorted(self.ts, until, side="right"))

    def upto(self, until: int) -> pd.DataFrame:
        """Every event with ts <= until (a view of the sorted frame)."""
        return self.events.iloc[: self.end(until)]

    def counts(
        self, until: int, polarity: Polarity | None = Polarity.NEG, since: int | None = None
    ) -> np.ndarray:
        """[n_items] events per item with since < ts <= until (of one polarity, or all)."""
        start = 0 if since is None else self.end(since)
        stop = self.end(until)
        rows = self.item_rows[start:stop]
        keep = rows >= 0
        if polarity is not None:
            keep &= self.polarity[start:stop] == polarity
        return np.bincount(rows[keep], minlength=self.n_items).astype(np.float64)


@dataclass(frozen=True)
class RefitPoint:
    """Fit at `until` (every event with ts <= until), then score `users`."""

    until: int
    users: tuple[str, ...]


def refit_schedule(cutoffs: pd.Series, buckets: int | None) -> list[RefitPoint]:
    """When to fit, in time order, so that every user is scored by a fit that saw nothing past
    their cutoff. `buckets=None`: at every distinct cutoff (exact). Else users are sorted by
    cutoff into at most `buckets` groups of about equal size (users sharing a cutoff stay
    together), each fitted at its earliest cutoff."""
    ordered = cutoffs.sort_values(kind="stable")
    values = ordered.to_numpy(dtype=np.int64)
    users = ordered.index.astype(str).to_numpy()
    distinct, starts = np.unique(values, return_index=True)
    if buckets is None or buckets >= len(distinct):
        bounds = starts
    else:
        # The first user of each equal-size slice, moved back to the first user with its cutoff.
        wanted = np.linspace(0, len(values), buckets, endpoint=False).astype(np.int64)
        bounds = np.unique(starts[np.searchsorted(distinct, values[wanted])])
    stops = np.append(bounds[1:], len(values))
    return [
        RefitPoint(int(values[a]), tuple(users[a:b].tolist()))
        for a, b in zip(bounds.tolist(), stops.tolist(), strict=True)
    ]


def lag_days(cutoffs: pd.Series, schedule: Sequence[RefitPoint]) -> np.ndarray:
    """[users] days between each user's cutoff and the fit that scores them."""
    fitted = {user: point.until for point in schedule for user in point.users}
    return np.asarray([(cutoffs[u] - fitted[str(u)]) / 86_400 for u in cutoffs.index])
