"""Temporal splits: for a user and a cutoff t, what is known (history) and what is to be predicted.

history          = the user's events with ts <= t
next negative    = the first negative with ts > t
future negatives = all negatives with t < ts <= t + horizon (7 days by default)
future positives = likewise for positives
trending         = the items most often dismissed by anyone in the 30 days up to t (a prompt's
                   global context: what popularity knows and one user's history does not)

The cutoff is the timestamp of the last event the model may see, so an event never sits on both
sides. ml-100k users rate in bursts, so its cutoffs are per user (`midpoint_cutoffs`); a
platform's logs usually want one date for everyone. `cutoffs_for` reads the spelling that
configs and commands use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from conrec.model.data.cutoff_spec import CUTOFF_HELP
from conrec.model.data.tables import DAY_SECONDS, Polarity
from conrec.model.data.visibility import EventLog

HORIZON_DAYS = 7
TRENDING_DAYS = 30
TRENDING_ITEMS = 20


@dataclass(frozen=True)
class UserWindow:
    """One user's view at one cutoff. Item sequences are in time order, oldest first."""

    user_id: str
    cutoff: int
    history_items: np.ndarray  # [H] item ids of the events with ts <= cutoff
    history_ts: np.ndarray  # [H]
    history_polarity: np.ndarray  # [H] Polarity values
    next_negative: str | None
    future_negatives: tuple[str, ...]
    future_positives: tuple[str, ...]
    future_exposures: tuple[str, ...] = ()
    trending_negatives: tuple[str, ...] = ()  # most dismissed first, every user's events <= t

    def negatives(self, since: int | None = None) -> list[str]:
        """Historical negatives, optionally only those with ts >= since."""
        mask = self.history_polarity == Polarity.NEG
        if since is not None:
            mask &= self.history_ts >= since
        return self.history_items[mask].tolist()

    def positives(self) -> list[str]:
        return self.history_items[self.history_polarity == Polarity.POS].tolist()

    def recent_negatives(self, days: float = 3) -> list[str]:
        """Negatives in the `days` before the cutoff (progressive GRPO's first stage)."""
        return self.negatives(since=int(self.cutoff - days * DAY_SECONDS))


def midpoint_cutoffs(events: pd.DataFrame) -> pd.Series:
    """Per user: the timestamp of the event in the middle of their history (user_id -> ts).

    The first half of a user's events (at least one) is history. On ml-100k this leaves 809 users
    with a negative in the following 7 days and 587 with three or more.
    """
    ts = events.sort_values(["user_id", "ts"], kind="stable").groupby("user_id")["ts"]
    return ts.agg(lambda s: int(s.iloc[max(len(s) // 2 - 1, 0)])).rename("cutoff")


def global_cutoffs(events: pd.DataFrame, cutoff: int) -> pd.Series:
    """The same cutoff for every user (e.g. KuaiRand: 7 days of history, 7 of future)."""
    users = np.sort(events["user_id"].unique())
    return pd.Series(int(cutoff), index=pd.Index(users, name="user_id"), name="cutoff")


def cutoffs_for(events: pd.DataFrame, spec: str | int) -> pd.Series:
    """Cutoffs (user_id -> ts) from a spec; see CUTOFF_HELP. Raises ValueError naming it."""
    text = str(spec).strip()
    if text == "midpoint":
        return midpoint_cutoffs(events)
    if events.empty:
        return global_cutoffs(events, 0)
    last = int(events["ts"].max())
    if text == "latest":
        return global_cutoffs(events, last)
    if text.startswith("last:") and text.endswith("d"):
        try:
            days = float(text[5:-1])
        except ValueError:
            days = -1.0
        if days > 0:
            return global_cutoffs(events, last - int(days * DAY_SECONDS))
    elif text.lstrip("-").isdigit():
        return global_cutoffs(events, int(text))
    else:
        try:
            when = pd.Timestamp(text)
        except ValueError:
            when = None
        if when is not None and not pd.isna(when):
            when = when.tz_localize("UTC") if when.tzinfo is None else when
            return global_cutoffs(events, int(when.timestamp()))
    raise ValueError(f"cutoff {text!r} is not one of: {CUTOFF_HELP}")


def validation_spec(spec: str | int) -> str:
    """The cutoff spec of the validation split, applied to the events up to the test cutoffs:
    a relative spec applies again; an absolute one (a date, `latest`) moves back one horizon."""
    text = str(spec).strip()
    return text if text == "midpoint" or text.startswith("last:") else f"last:{HORIZON_DAYS}d"


def training_cutoffs(
    events: pd.DataFrame, eval_cutoffs: pd.Series, max_per_user: int = 8
) -> pd.DataFrame:
    """Earlier cutoffs for training samples that never look past the user's eval cutoff.

    A candidate cutoff is the timestamp just before one of the user's negatives (so that negative
    is the "next negative") with at least one negative already in its history. The most recent
    `max_per_user` candidates are kept. Returns columns user_id, cutoff, until; `until` (the eval
    cutoff) caps the future window so no evaluation event leaks into training targets.
    """
    rows: list[tuple[str, int, int]] = []
    ts_all = events["ts"].to_numpy()
    neg_all = (events["polarity"] == Polarity.NEG).to_numpy()
    for user, start, stop in _user_slices(events):
        limit = eval_cutoffs.get(user)
        if limit is None:
            continue
        ts, is_neg = ts_all[start:stop], neg_all[start:stop]
        neg_seen = np.cumsum(is_neg)
        picked: list[int] = []
        for i in np.flatnonzero(is_neg & (ts <= limit))[::-1]:
            prev = int(np.searchsorted(ts, ts[i], side="left")) - 1  # last event strictly before
            if prev < 0 or neg_seen[prev] == 0 or int(ts[prev]) in picked:
                continue
            picked.append(int(ts[prev]))
            if len(picked) == max_per_user:
                break
        rows += [(user, c, int(limit)) for c in sorted(picked)]
    return pd.DataFrame(rows, columns=["user_id", "cutoff", "until"])


def user_windows(
    events: pd.DataFrame,
    cutoffs: pd.Series | pd.DataFrame,
    horizon_days: float = HORIZON_DAYS,
) -> Iterator[UserWindow]:
    """Windows for (user, cutoff) pairs.

    `cutoffs` is a Series user_id -> cutoff, or a frame with user_id, cutoff and optionally
    until (a timestamp past which the future window is cut off). `events` must be sorted by
    (user_id, ts), as `validate_events` returns them.
    """
    pairs = (
        cutoffs.rename("cutoff").rename_axis("user_id").reset_index()
        if isinstance(cutoffs, pd.Series)
        else cutoffs
    )
    horizon = int(horizon_days * DAY_SECONDS)
    trending = _Trending(events)
    slices = {user: (start, stop) for user, start, stop in _user_slices(events)}
    ts_all = events["ts"].to_numpy()
    items_all = events["item_id"].to_numpy().astype(str)
    pol_all = events["polarity"].to_numpy().astype(str)
    until = pairs["until"].tolist() if "until" in pairs else [None] * len(pairs)
    keys = zip(pairs["user_id"].tolist(), pairs["cutoff"].tolist(), until, strict=True)
    for user, cut, cap in keys:
        if user not in slices:
            continue
        start, stop = slices[user]
        ts = ts_all[start:stop]
        split = int(np.searchsorted(ts, cut, side="right"))
        last = stop - start if cap is None else int(np.searchsorted(ts, cap, side="right"))
        end = int(np.searchsorted(ts, cut + horizon, side="right"))
        items, pol = items_all[start:stop], pol_all[start:stop]
        later_neg = np.flatnonzero(pol[split:last] == Polarity.NEG)
        future = slice(split, min(end, last))
        yield UserWindow(
            user_id=str(user),
            cutoff=int(cut),
            history_items=items[:split],
            history_ts=ts[:split],
            history_polarity=pol[:split],
            next_negative=str(items[split + later_neg[0]]) if len(later_neg) else None,
            future_negatives=_items(items[future], pol[future], Polarity.NEG),
            future_positives=_items(items[future], pol[future], Polarity.POS),
            future_exposures=_items(items[future], pol[future], Polarity.EXPOSURE),
            trending_negatives=trending.at(int(cut)),
        )


class _Trending:
    """ "Most dismissed in the 30 days up to t", from the time-consistent event log; answers
    are cached per t, since global cutoffs repeat one t for every user."""

    def __init__(self, events: pd.DataFrame):
        neg = events[events["polarity"].to_numpy().astype(str) == Polarity.NEG]
        # Items in order of their first dismissal: the tie-break that makes the list stable.
        first = neg.sort_values("ts", kind="stable")["item_id"].astype(str).unique()
        self.log, self.items = EventLog.of(neg, first), first
        self.cache: dict[int, tuple[str, ...]] = {}

    def at(self, cutoff: int) -> tuple[str, ...]:
        if cutoff not in self.cache:
            since = cutoff - TRENDING_DAYS * DAY_SECONDS
            counts = self.log.counts(cutoff, Polarity.NEG, since=since)
            top = np.lexsort((np.arange(len(counts)), -counts))[:TRENDING_ITEMS]
            self.cache[cutoff] = tuple(self.items[top[counts[top] > 0]].tolist())
        return self.cache[cutoff]


def _user_slices(events: pd.DataFrame) -> Iterator[tuple[str, int, int]]:
    """(user_id, start, stop) row ranges of each user in events sorted by user_id."""
    users = events["user_id"].to_numpy()
    if len(users) == 0:
        return
    if len(users) > 1 and not (users[1:] >= users[:-1]).all():
        raise ValueError("events must be sorted by (user_id, ts); use validate_events")
    bounds = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [len(users)]])
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        yield str(users[a]), a, b


def _items(items: np.ndarray, polarity: np.ndarray, which: Polarity) -> tuple[str, ...]:
    return tuple(items[polarity == which].tolist())
