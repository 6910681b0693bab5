"""Comparison models, each a score over the whole catalogue for one user's window.

A baseline's `scores(window)` ([n_items], higher = more likely to be disliked) serves both the
top-k metrics (`top_sids`) and Candidate Accuracy (the scores of the 20 candidates), so every
model is judged by its own score in both. Each score carries its own tie-break where its primary
signal is coarse (category blocker, Swing): popularity scaled below one unit, so a user with no
signal gets the popularity ranking rather than an arbitrary one.

Tuning budget (chosen on the validation cutoff, `conrec evaluate`): random and popularity have
none; the category blocker two variants (`weighted`, `any`); Swing three co-occurrence floors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np
import pandas as pd

from codebook.artifact import ItemSIDTable
from model.data.splits import UserWindow
from model.data.tables import Polarity, categories_of
from model.sids import SID
from model.swing import SwingConfig, swing_scores


class Baseline(Protocol):
    name: str

    def fit(self, visible: pd.DataFrame) -> None:
        """Learn from every user's events up to their cutoff."""

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


def _popularity(visible: pd.DataFrame, catalogue: Catalogue) -> np.ndarray:
    counts = visible.loc[visible["polarity"] == Polarity.NEG, "item_id"].value_counts()
    return np.asarray([counts.get(i, 0) for i in catalogue.item_ids.tolist()], dtype=np.float64)


def _below_one(values: np.ndarray) -> np.ndarray:
    """Scale non-negative values into [0, 1): a tie-break that never outranks one unit."""
    return values / (values.max() + 1.0) if len(values) else values


class RandomBaseline:
    """k uniformly random items per user: the floor."""

    name = "random"

    def __init__(self, catalogue: Catalogue, seed: int = 0):
        self.catalogue, self.seed = catalogue, seed

    def fit(self, visible: pd.DataFrame) -> None:
        pass

    def scores(self, window: UserWindow) -> np.ndarray:
        digest = hashlib.sha1(f"{self.seed}:{window.user_id}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little")).random(
            len(self.catalogue)
        )


class PopularityBaseline:
    """The most-disliked items overall, the same list for everyone."""

    name = "popularity"

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.popularity = np.zeros(len(catalogue))

    def fit(self, visible: pd.DataFrame) -> None:
        self.popularity = _popularity(visible, self.catalogue)

    def scores(self, window: UserWindow) -> np.ndarray:
        return self.popularity


class CategoryBlocker:
    """The rule-based blocker (paper fig. 1): items in the user's disliked categories, most
    disliked first. `weighted` counts how many of the user's negatives share a category with the
    item; `any` only whether one does."""

    name = "category_blocker"
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

    def fit(self, visible: pd.DataFrame) -> None:
        self._tiebreak = _below_one(_popularity(visible, self.catalogue))

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
    MIN_COMMON_USERS = (0, 2, 5)

    def __init__(self, catalogue: Catalogue, config: SwingConfig | None = None):
        self.catalogue = catalogue
        self.config = config or replace(SwingConfig(), top_k=100)
        n = len(catalogue)
        self._similarity = np.zeros((n, n))  # [N, N] item -> neighbour
        self._tiebreak = np.zeros(n)

    def fit(self, visible: pd.DataFrame) -> None:
        n = len(self.catalogue)
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
        self._tiebreak = _below_one(_popularity(visible, self.catalogue)) * smallest * 1e-3

    def scores(self, window: UserWindow) -> np.ndarray:
        rows = self.catalogue.index(window.negatives())
        return self._similarity[rows].sum(axis=0) + self._tiebreak
