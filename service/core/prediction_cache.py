"""The run cache: users' predictions of the published run, and what scoring derives from them,
held in process until the published-run pointer moves.

A published run never changes (``store``), so a value read once stays right until the
pointer flips to another run (a new nightly run or a rollback), when the cache is emptied, or
until the user is erased (``conrec store forget``), which readers learn from the store's erasure
log. Users the run does not hold are cached as misses. Least recently used entries go first once
the entry or byte bound is reached; both bounds come from the settings.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from conrec.codebook.artifact import Codebook
from conrec.codebook.calibration import PredictedPrefixes
from conrec.codebook.similarity import prediction_tables
from conrec.store.values import Prediction, RunMeta

# Dot tables larger than this (K x D x size float32: 7.5 KiB for K=20 on a 3 x 32 codebook, 60
# KiB on 3 x 256) are rebuilt per request rather than kept: one small matmul per request against
# holding eight times fewer users in the same bytes.
MAX_KEPT_TABLE_BYTES = 16 * 1024
# What an entry costs beyond its arrays: the dict slot, the key string's header, the entry
# object and the Prediction with its array headers (measured with sys.getsizeof, rounded up).
ENTRY_OVERHEAD_BYTES = 640
MISS_OVERHEAD_BYTES = 160


@dataclass(eq=False, slots=True)
class Usage:
    """The bytes a cache's entries hold; entries add what they derive after insertion."""

    bytes: int = 0


@dataclass(eq=False, slots=True)
class CachedPrediction:
    """A user's prediction and, computed on first use and kept with it, its decoded unit
    vectors [K, dim], per-level dot tables [K, D * size] (``max_cosine_tables``; kept up to
    ``MAX_KEPT_TABLE_BYTES``) and SID prefixes (the calibrated score's prefix depth), in the
    codebook version the prediction was made with."""

    prediction: Prediction
    usage: Usage = field(default_factory=Usage)
    _units: np.ndarray | None = None
    _tables: np.ndarray | None = None
    _prefixes: PredictedPrefixes | None = None

    def units(self, codebook: Codebook) -> np.ndarray:
        """Unit vectors of the predicted SIDs; raises InvalidSIDError for codes ``codebook``
        does not have (a corrupt value)."""
        if self._units is None:
            codes = codebook.validate(self.prediction.codes)
            self._units = codebook.decode_normalized(codes, validate=False)
            self.usage.bytes += self._units.nbytes
        return self._units

    def tables(self, codebook: Codebook) -> np.ndarray:
        if self._tables is not None:
            return self._tables
        tables = prediction_tables(codebook, self.units(codebook))
        if tables.nbytes <= MAX_KEPT_TABLE_BYTES:
            self._tables = tables
            self.usage.bytes += tables.nbytes
        return tables

    def prefixes(self, codebook: Codebook) -> PredictedPrefixes:
        """The predicted SIDs' prefixes; call ``units`` first, which validates the codes."""
        if self._prefixes is None:
            self._prefixes = PredictedPrefixes.of(self.prediction.codes, codebook.size)
            self.usage.bytes += self._prefixes.nbytes
        return self._prefixes

    @property
    def derived_bytes(self) -> int:
        kept = (self._units, self._tables, self._prefixes)
        return sum(a.nbytes for a in kept if a is not None)


class NotCached(Enum):
    """``PredictionCache.get``'s answer for a user it holds nothing about (as opposed to None,
    a user the run is known not to hold)."""

    NOT_CACHED = "not cached"


NOT_CACHED = NotCached.NOT_CACHED


class PredictionCache:
    """User id -> ``CachedPrediction`` (or None: not in the run) for one run, LRU-bounded by
    ``max_entries`` and ``max_bytes`` (0 entries: nothing is kept). Used from the event loop
    only: no locks."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.run_id: str | None = None
        self.usage = Usage()
        self.hits = self.misses = 0
        # Evictions by reason: capacity (LRU), run (the pointer moved), erased (forget).
        self.evicted = {"capacity": 0, "run": 0, "erased": 0}
        # Insertion-ordered: the first key is the least recently used.
        self._entries: dict[str, CachedPrediction | None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, run: RunMeta, user_id: str) -> CachedPrediction | NotCached | None:
        """The user's entry in ``run``, None if ``run`` does not hold them, or ``NOT_CACHED``.
        A run other than the cached one empties the cache first."""
        if run.run_id != self.run_id:
            self._switch(run.run_id)
        entries = self._entries
        try:
            entry = entries.pop(user_id)
        except KeyError:
            self.misses += 1
            return NOT_CACHED
        entries[user_id] = entry  # now the most recently used
        self.hits += 1
        return entry

    def put(self, run: RunMeta, user_id: str, prediction: Prediction | None) -> CachedPrediction:
        """Cache what ``run`` holds for the user (None: nothing); the entry to score with
        (a fresh one, uncached, when the cache is off or the run moved meanwhile)."""
        entry = None if prediction is None else CachedPrediction(prediction, self.usage)
        if self.max_entries == 0 or run.run_id != self.run_id:
            if entry is not None:
                entry.usage = Usage()  # not this cache's bytes
            return entry
        self._entries[user_id] = entry
        self.usage.bytes += _cost(user_id, prediction)
        self._shrink()
        return entry

    def forget(self, user_ids: Iterable[str]) -> None:
        """Drop erased users' entries."""
        for user_id in user_ids:
            if user_id in self._entries:
                self._drop(user_id)
                self.evicted["erased"] += 1

    def clear(self) -> None:
        self.evicted["erased"] += len(self._entries)
        self._entries.clear()
        self.usage.bytes = 0

    def _switch(self, run_id: str) -> None:
        self.evicted["run"] += len(self._entries)
        self._entries.clear()
        self.usage.bytes = 0
        self.run_id = run_id

    def _shrink(self) -> None:
        entries = self._entries
        while len(entries) > self.max_entries or (
            self.usage.bytes > self.max_bytes and len(entries) > 1
        ):
            self._drop(next(iter(entries)))
            self.evicted["capacity"] += 1

    def _drop(self, user_id: str) -> None:
        entry = self._entries.pop(user_id)
        self.usage.bytes -= _cost(user_id, None if entry is None else entry.prediction)
        if entry is not None:
            self.usage.bytes -= entry.derived_bytes


def _cost(user_id: str, prediction: Prediction | None) -> int:
    key = sys.getsizeof(user_id)
    if prediction is None:
        return MISS_OVERHEAD_BYTES + key
    features = prediction.user_features
    extra = 0 if features is None else features.nbytes
    return ENTRY_OVERHEAD_BYTES + key + prediction.codes.nbytes + extra
