"""The run cache on its own: bounds, least-recently-used order, run switches, erasures."""

from __future__ import annotations

import numpy as np
import pytest

from conrec.codebook.artifact import Codebook
from conrec.service.core.prediction_cache import MAX_KEPT_TABLE_BYTES, NOT_CACHED, PredictionCache
from conrec.store.values import Prediction, RunMeta

R1 = RunMeta("r1", 0.0, "cb", "m", k=2, d=3, ttl_s=300)
R2 = RunMeta("r2", 0.0, "cb", "m", k=2, d=3, ttl_s=300)


def prediction(run: RunMeta = R1) -> Prediction:
    return Prediction(np.zeros((2, 3), np.uint16), run.run_id, 0.0, "cb")


def fill(cache: PredictionCache, run: RunMeta, users: list[str]) -> None:
    for user in users:
        assert cache.get(run, user) is NOT_CACHED
        cache.put(run, user, prediction(run))


def test_a_hit_returns_what_was_put_and_a_miss_is_cached_as_none() -> None:
    cache = PredictionCache(max_entries=10, max_bytes=10**6)
    assert cache.get(R1, "u") is NOT_CACHED
    entry = cache.put(R1, "u", prediction())
    assert cache.get(R1, "u") is entry
    assert cache.get(R1, "absent") is NOT_CACHED
    assert cache.put(R1, "absent", None) is None
    assert cache.get(R1, "absent") is None  # known not to be in the run
    assert (cache.hits, cache.misses, len(cache)) == (2, 2, 2)


def test_the_least_recently_used_entry_goes_first_at_the_entry_bound() -> None:
    cache = PredictionCache(max_entries=2, max_bytes=10**6)
    fill(cache, R1, ["a", "b"])
    cache.get(R1, "a")  # now b is the least recently used
    fill(cache, R1, ["c"])
    assert cache.get(R1, "b") is NOT_CACHED
    assert cache.get(R1, "a") is not NOT_CACHED
    assert len(cache) == 2
    assert cache.evicted["capacity"] == 1


def test_the_byte_bound_counts_what_scoring_derives_from_an_entry() -> None:
    codebook = Codebook(np.random.default_rng(0).normal(size=(3, 64, 32)).astype(np.float32))
    cache = PredictionCache(max_entries=100, max_bytes=10**6)
    entry = cache.put(R1, "u", prediction()) if cache.get(R1, "u") is NOT_CACHED else None
    before = cache.usage.bytes
    units, tables = entry.units(codebook), entry.tables(codebook)
    assert entry.tables(codebook) is tables  # computed once
    assert cache.usage.bytes == before + units.nbytes + tables.nbytes
    # A bound of a few entries' bytes keeps only the most recent ones.
    small = PredictionCache(max_entries=100, max_bytes=3 * before)
    fill(small, R1, [f"u{i}" for i in range(10)])
    assert 1 <= len(small) <= 3
    assert small.usage.bytes <= 3 * before
    small.forget([f"u{i}" for i in range(10)])
    assert (len(small), small.usage.bytes) == (0, 0)


def test_dot_tables_too_large_to_keep_are_rebuilt_per_request() -> None:
    codebook = Codebook(np.random.default_rng(2).normal(size=(3, 256, 32)).astype(np.float32))
    codes = np.random.default_rng(3).integers(0, 256, size=(20, 3)).astype(np.uint16)
    cache = PredictionCache(max_entries=10, max_bytes=10**7)
    cache.get(R1, "u")
    entry = cache.put(R1, "u", Prediction(codes, "r1", 0.0, "cb"))
    entry.units(codebook)
    before = cache.usage.bytes
    first, second = entry.tables(codebook), entry.tables(codebook)
    assert first.nbytes > MAX_KEPT_TABLE_BYTES
    assert first is not second
    np.testing.assert_array_equal(first, second)
    assert cache.usage.bytes == before


def test_another_run_empties_the_cache_and_a_read_that_raced_a_flip_is_not_kept() -> None:
    cache = PredictionCache(max_entries=10, max_bytes=10**6)
    fill(cache, R1, ["a", "b"])
    assert cache.get(R2, "a") is NOT_CACHED  # the pointer moved: r1's entries are gone
    assert (len(cache), cache.evicted["run"]) == (0, 2)
    # A read of r1 that completes after the flip is answered but not cached.
    entry = cache.put(R1, "a", prediction(R1))
    assert entry is not None
    assert len(cache) == 0
    # r2 cached, then back to r1 (a rollback): nothing of r2 is kept.
    fill(cache, R2, ["c"])
    assert cache.get(R1, "c") is NOT_CACHED


def test_erased_users_are_dropped_and_a_disabled_cache_keeps_nothing() -> None:
    cache = PredictionCache(max_entries=10, max_bytes=10**6)
    fill(cache, R1, ["a", "b"])
    cache.forget(["a", "nobody"])
    assert cache.get(R1, "a") is NOT_CACHED
    assert cache.get(R1, "b") is not NOT_CACHED
    assert cache.evicted["erased"] == 1
    off = PredictionCache(max_entries=0, max_bytes=10**6)
    assert off.get(R1, "a") is NOT_CACHED
    assert off.put(R1, "a", prediction()) is not None
    assert (len(off), off.usage.bytes, off.get(R1, "a")) == (0, 0, NOT_CACHED)


@pytest.mark.parametrize("entries", [1, 7])
def test_bytes_return_to_zero_when_every_entry_is_gone(entries: int) -> None:
    codebook = Codebook(np.random.default_rng(1).normal(size=(3, 16, 8)).astype(np.float32))
    cache = PredictionCache(max_entries=entries, max_bytes=10**6)
    for i in range(20):
        user = f"u{i}"
        if cache.get(R1, user) is NOT_CACHED:
            entry = cache.put(R1, user, prediction() if i % 3 else None)
            if entry is not None:
                entry.tables(codebook)
    assert len(cache) == entries
    cache.get(R2, "x")
    assert (len(cache), cache.usage.bytes) == (0, 0)
