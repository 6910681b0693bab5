"""Comparison models, each a score over the whole catalogue for one user's window.

A baseline's `scores(window)` ([n_items], higher = more likely to be disliked) serves the top-k
metrics (`top_sids`), Candidate Accuracy (the scores of the 20 candidates) and the decision (its
own score of the user's future items), so every model is judged by its own score in each. Each
score carries its own tie-break where its primary signal is coarse (category blocker, Swing):
popularity scaled below one unit, so a user with no signal gets the popularity ranking rather
than an arbitrary one.

Every baseline is fitted under the time-consistent protocol (`conrec.model.data.visibility`):
`fit(log, until)` may read only the events with ts <= until, and `scores(window)` only the
user's own history, which ends at their cutoff. `exact` baselines are refitted at every distinct
cutoff; the others once per bucket of cutoffs, at its earliest.

Tuning budget (chosen on the validation split, `conrec.evaluation.tuning`): random and
popularity have none; recent popularity its window; the dislike prior its smoothing; the
category blocker two variants (`weighted`, `any`); Swing three co-occurrence floors; the
factorisation its width and regularisation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np
import pandas as pd

from conrec.codebook.artifact import ItemSIDTable
from conrec.model.data.splits import UserWindow
from conrec.model.data.tables import DAY_SECONDS, Polarity, categories_of
from conrec.model.data.visibility import EventLog
from conrec.model.mf import MatrixFactorization, MFConfig
from conrec.model.sids import SID
from conrec.model.swing import SwingConfig, swing_scores


class Baseline(Protocol):
    name: str
    # True: cheap statistics, refitted at every distinct cutoff; False: a model fitted once per
    # bucket of cutoffs (`visibility.refit_schedule`), at most `max_fits` buckets per split
    # (None: the split's number).
    exact: bool
    max_fits: int | None

    def fit(self, log: EventLog, until: int) -> None:
        """Learn from every event with ts <= until, and nothing else."""

    def scores(self, window: UserWindow) -> np.ndarray:
        """[n_items] scores of every catalogue item for this user."""


class Catalogue:
    """The evaluated items (rows of the item -> SID table) and their categories."""

    def __init__(
        self, item_ids: np.ndarray, codes: np.ndarray, categories: Sequence[frozenset[str]]
    ):
        self.item_ids = np.asarray(item_ids, dtype=str)  # [N]
        self.codes = np.asarray(codes)  # [N, D]
        self.categories = tuple(categories)  # [N]
        self._row = {item: row for row, item in enumerate(self.item_ids.tolist())}

    @classmethod
    def of(cls, item_sids: ItemSIDTable, items: pd.DataFrame) -> Catalogue:
        by_id = dict(zip(items["item_id"].astype(str), items["category"].astype(str), strict=True))
        categories = [categories_of(by_id.get(str(i), "")) for i in item_sids.item_ids.tolist()]
        return cls(item_sids.item_ids, item_sids.codes, categories)

    def __len__(self) -> int:
        return len(self.item_ids)

    def index(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of the known `item_ids` (unknown ids are skipped)."""
        return np.asarray([self._row[i] for i in item_ids if i in self._row], dtype=np.int64)

    def index_all(self, item_ids: Sequence[str]) -> np.ndarray:
        """[len(item_ids)] rows, -1 for an id outside the catalogue."""
        return np.asarray([self._row.get(i, -1) for i in item_ids], dtype=np.int64)

    def known(self, item_ids: Sequence[str]) -> np.ndarray:
        """[len(item_ids)] bool: which ids are in the catalogue."""
        return np.asarray([i in self._row for i in item_ids], dtype=bool)


def top_sids(
    scores: np.ndarray, catalogue: Catalogue, exclude: frozenset[SID], k: int = 20
) -> list[SID]:
    """The k best distinct SIDs by score (ties by row), skipping excluded SIDs."""
    out: list[SID] = []
    taken = set(exclude)
    for row in np.lexsort((np.arange(len(scores)), -scores)).tolist():
        sid = tuple(int(c) for c in catalogue.codes[row])
        if sid not in taken:
            taken.add(sid)
            out.append(sid)
            if len(out) == k:
                break
    return out


def _below_one(values: np.ndarray) -> np.ndarray:
    """Scale non-negative values into [0, 1): a tie-break that never outranks one unit."""
    return values / (values.max() + 1.0) if len(values) else values


class RandomBaseline:
    """k uniformly random items per user: the floor."""

    name = "random"
    exact = True
    max_fits = None

    def __init__(self, catalogue: Catalogue, seed: int = 0):
        self.catalogue, self.seed = catalogue, seed

    def fit(self, log: EventLog, until: int) -> None:
        pass

    def scores(self, window: UserWindow) -> np.ndarray:
        digest = hashlib.sha1(f"{self.seed}:{window.user_id}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little")).random(
            len(self.catalogue)
        )


class PopularityBaseline:
    """The most-disliked items up to the cutoff, the same list for everyone; with
    `window_days`, only the negatives of that many days before it count."""

    name = "popularity"
    exact = True
    max_fits = None
    WINDOWS = (7, 30, 90)  # days, the recent variant's tuning budget

    def __init__(self, catalogue: Catalogue, window_days: float | None = None):
        self.catalogue, self.window_days = catalogue, window_days
        if window_days is not None:
            self.name = "popularity_recent"
        self.popularity = np.zeros(len(catalogue))

    def fit(self, log: EventLog, until: int) -> None:
        since = None if self.window_days is None else until - int(self.window_days * DAY_SECONDS)
        self.popularity = log.counts(until, Polarity.NEG, since=since)

    def scores(self, window: UserWindow) -> np.ndarray:
        return self.popularity


class DislikePrior:
    """An item's share of negatives among all its feedback up to the cutoff, smoothed toward
    the catalogue's share with `strength` pseudo-events: (neg + strength * p) / (n + strength).
    An item nobody has rated yet scores the catalogue's share."""

    name = "dislike_prior"
    exact = True
    max_fits = None
    STRENGTHS = (1.0, 5.0, 20.0)

    def __init__(self, catalogue: Catalogue, strength: float = 5.0):
        self.catalogue, self.strength = catalogue, strength
        self.prior = np.zeros(len(catalogue))

    def fit(self, log: EventLog, until: int) -> None:
        neg = log.counts(until, Polarity.NEG)
        total = log.counts(until, None)
        share = neg.sum() / total.sum() if total.sum() else 0.0
        self.prior = (neg + self.strength * share) / (total + self.strength)

    def scores(self, window: UserWindow) -> np.ndarray:
        return self.prior


class FactorizationBaseline:
    """A biased matrix factorisation of the visible feedback (neg -1, exposure 0, pos +1;
    `conrec.model.mf`): item factors fitted per bucket of cutoffs, the user's factors
    folded in from their own history up to their cutoff. Score: minus the predicted rating."""

    name = "factorization"
    exact = False
    max_fits = None
    GRID = ((16, 1.0), (16, 10.0), (32, 30.0))  # (factors, regularisation)

    def __init__(self, catalogue: Catalogue, config: MFConfig | None = None):
        self.catalogue = catalogue
        self.model = MatrixFactorization(len(catalogue), config or MFConfig())

    def fit(self, log: EventLog, until: int) -> None:
        self.model.fit_until(log, until)

    def scores(self, window: UserWindow) -> np.ndarray:
        rows = self.catalogue.index_all(window.history_items.tolist())
        return -self.model.predict_user(rows, window.history_polarity)


class CategoryBlocker:
    """The rule-based blocker (paper fig. 1): items in the user's disliked categories, most
    disliked first. `weighted` counts how many of the user's negatives share a category with the
    item; `any` only whether one does."""

    name = "category_blocker"
    exact = True
    max_fits = None
    VARIANTS = ("weighted", "any")

    def __init__(self, catalogue: Catalogue, variant: str = "weighted"):
        if variant not in self.VARIANTS:
            raise ValueError(f"variant must be one of {self.VARIANTS}, got {variant!r}")
        self.catalogue, self.variant = catalogue, variant
        names = sorted(set().union(*catalogue.categories))
        self._column = {name: col for col, name in enumerate(names)}
        # [N, C] item-category incidence
        self._incidence = np.zeros((len(catalogue), len(names)))
        for row, cats in enumerate(catalogue.categories):
            self._incidence[row, [self._column[c] for c in cats]] = 1.0
        self._tiebreak = np.zeros(len(catalogue))

    def fit(self, log: EventLog, until: int) -> None:
        self._tiebreak = _below_one(log.counts(until, Polarity.NEG))

    def scores(self, window: UserWindow) -> np.ndarray:
        disliked = self._incidence[self.catalogue.index(window.negatives())].sum(axis=0)  # [C]
        matched = self._incidence @ disliked  # [N]
        if self.variant == "any":
            matched = (matched > 0).astype(np.float64)
        return matched + self._tiebreak


class SwingBaseline:
    """Item-to-item Swing (paper eq. 5) from the user's past negatives: the sum of the Swing
    scores of an item to each of them."""

    name = "swing"
    exact = False
    max_fits = None
    MIN_COMMON_USERS = (0, 2, 5)

    def __init__(self, catalogue: Catalogue, config: SwingConfig | None = None):
        self.catalogue = catalogue
        self.config = config or replace(SwingConfig(), top_k=100)
        n = len(catalogue)
        self._similarity = np.zeros((n, n))  # [N, N] item -> neighbour
        self._tiebreak = np.zeros(n)

    def fit(self, log: EventLog, until: int) -> None:
        n = len(self.catalogue)
        visible = log.upto(until)
        negatives = visible[visible["polarity"] == Polarity.NEG]
        pairs = swing_scores(negatives, self.config)
        known = self.catalogue.known(pairs["item_i"].tolist()) & self.catalogue.known(
            pairs["item_j"].tolist()
        )
        pairs = pairs[known]
        sim = np.zeros((n, n))
        sim[
            self.catalogue.index(pairs["item_i"].tolist()),
            self.catalogue.index(pairs["item_j"].tolist()),
        ] = pairs["score"].to_numpy()
        self._similarity = sim
        # Popularity breaks ties among items Swing says nothing about, far below any Swing score.
        smallest = pairs["score"].min() if len(pairs) else 1.0
        self._tiebreak = _below_one(log.counts(until, Polarity.NEG)) * smallest * 1e-3

    def scores(self, window: UserWindow) -> np.ndarray:
        rows = self.catalogue.index(window.negatives())
        return self._similarity[rows].sum(axis=0) + self._tiebreak
