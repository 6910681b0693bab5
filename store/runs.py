"""Runs: the batch job writes and publishes them; operators list, roll back and erase; blocking
reads for tools and tests (the service reads through ``conrec.store.reader``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from conrec.store.bulk_sets import BulkSetter, WriteRefused
from conrec.store.connection import StoreClient
from conrec.store.keys import DEFAULT_PREFIX, KeySchema
from conrec.store.pointer import PointerCache
from conrec.store.values import Prediction, RunMeta, StoreError, pack_values, to_prediction

DEFAULT_PERIOD_S = 24 * 3600


class PredictionStore:
    """Writer and (blocking) reader of versioned prediction runs. Safe to share between
    threads."""

    def __init__(
        self, client: StoreClient, *, prefix: str = DEFAULT_PREFIX, pointer_cache_s: float = 1.0
    ) -> None:
        self.client = client
        self.keys = KeySchema(prefix)
        self._pointer = PointerCache(pointer_cache_s)

    # Writer side.
    def begin_run(
        self,
        run_id: str,
        *,
        codebook_version: str,
        model_version: str,
        k: int = 20,
        d: int = 3,
        period_s: int = DEFAULT_PERIOD_S,
        ttl_s: int | None = None,
        user_features: int = 0,
        calibration_version: str = "",
    ) -> RunWriter:
        """Start (or resume: writes are idempotent per run id) writing run ``run_id``; with
        ``user_features``, each user's value carries that many float32 after the codes."""
        if not run_id or any(c in run_id for c in "{}: "):
            raise ValueError(
                f"run id must be non-empty without braces, colons or spaces: {run_id!r}"
            )
        ttl = 3 * period_s if ttl_s is None else ttl_s
        if ttl <= 2 * period_s:
            raise ValueError(f"ttl_s ({ttl}) must exceed 2 x period_s ({2 * period_s})")
        meta = RunMeta(
            run_id, time.time(), codebook_version, model_version, k, d, int(ttl),
            user_features=user_features, calibration_version=calibration_version,
        )  # fmt: skip
        return RunWriter(self, meta)

    def run_meta(self, run_id: str) -> RunMeta | None:
        """Metadata of a published run (None if never published or expired)."""
        raw = self.client.get(self.keys.run(run_id))
        return None if raw is None else RunMeta.from_json(raw)

    # Operations.
    def published_runs(self) -> list[RunMeta]:
        """The published runs whose keys are all still live, newest first."""
        return [meta for meta in self.recorded_runs().values() if meta is not None]

    def recorded_runs(self) -> dict[str, RunMeta | None]:
        """Every run id the record holds, newest first, with its metadata (None once expired).
        The record and the metadata share one slot, so MGET reads them on a cluster too."""
        ids = [i.decode() for i in self.client.zrevrange(self.keys.runs, 0, -1)]
        raws = self.client.mget([self.keys.run(i) for i in ids]) if ids else []
        now = time.time()
        metas = (None if raw is None else RunMeta.from_json(raw) for raw in raws)
        return {i: m if m and m.expires_at > now else None for i, m in zip(ids, metas, strict=True)}

    def rollback(self, run_id: str) -> RunMeta:
        """Point readers back at ``run_id``, an earlier run published whole whose keys still
        live; raises StoreError if it was never published completely or has expired."""
        meta = self.run_meta(run_id)
        if meta is None or meta.expires_at <= time.time():
            if meta is not None or self.client.zscore(self.keys.runs, run_id) is not None:
                raise StoreError(f"run {run_id} has expired: its predictions are gone")
            raise StoreError(f"run {run_id} was never published completely (or has expired)")
        # Copies the metadata into the pointer only if it still exists, atomically: a run
        # cannot expire between the check and the flip.
        raw = self.client.eval(_POINT_AT_RUN, 2, self.keys.run(run_id), self.keys.pointer)
        if raw is None:
            raise StoreError(f"run {run_id} has expired: its predictions are gone")
        return self._pointer.store(raw)

    # Reader side.
    def current_run(self) -> RunMeta | None:
        """The published run, re-read from Redis at most every ``pointer_cache_s`` seconds."""
        fresh, meta = self._pointer.fresh()
        return meta if fresh else self._pointer.store(self.client.get(self.keys.pointer))

    def forget(self, user_id: str) -> list[str]:
        """Erase ``user_id`` (an erasure request): delete their predictions from every run the
        store still records and from the published run, then log the erasure, which readers
        poll to drop what they cached (``AsyncPredictionReader.forgotten``). Returns the runs
        that held a value for the user. Idempotent: rerun it if it failed half-way. A run still
        being written can write the user again: take them out of the job's input first."""
        if not user_id:
            raise ValueError("user id must be non-empty")
        runs = self.recorded_runs()
        published = self.client.get(self.keys.pointer)
        if published is not None:
            current = RunMeta.from_json(published)
            runs.setdefault(current.run_id, current)
        # One DEL per run: the user's keys share their hash tag, but not with each other's runs
        # on every client (redis-py's cluster client refuses a multi-key DEL across slots).
        held = [run for run in runs if self.client.delete(self.keys.user(run, user_id))]
        # The log entry lives as long as any run can: a reader that has not seen it by then
        # has nothing of that user's left to drop.
        ttl = max((meta.ttl_s for meta in runs.values() if meta), default=3 * DEFAULT_PERIOD_S)
        n = self.client.incr(self.keys.forgotten_count)
        self.client.set(self.keys.forgotten(n), user_id, ex=ttl)
        return held

    def get(self, user_id: str) -> Prediction | None:
        """The user's prediction in the published run, or None (no run, or user not in it)."""
        run = self.current_run()
        if run is None:
            return None
        value = self.client.get(self.keys.user(run.run_id, user_id))
        return None if value is None else to_prediction(run, value)

    def get_many(self, user_ids: Sequence[str]) -> list[Prediction | None]:
        run = self.current_run()
        if run is None:
            return [None] * len(user_ids)
        # A non-transactional pipeline rather than MGET: user keys live in different slots.
        pipe = self.client.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.get(self.keys.user(run.run_id, user_id))
        return [None if v is None else to_prediction(run, v) for v in pipe.execute()]


class RunWriter:
    """Writes one run's predictions, then publishes it. Nothing is served until ``publish``."""

    def __init__(self, store: PredictionStore, meta: RunMeta) -> None:
        self.store = store
        self.meta = meta
        self.users_written = 0
        self._setter = BulkSetter(store.client)

    def write_batch(
        self, user_ids: Sequence[str], codes: np.ndarray, features: np.ndarray | None = None
    ) -> None:
        """Store ``codes`` [N, K, D] (and ``features`` [N, F] when the run carries them) for
        ``user_ids`` [N] with pipelined SETs (with TTL)."""
        codes = np.asarray(codes)
        expected = (len(user_ids), self.meta.k, self.meta.d)
        if codes.shape != expected:
            raise StoreError(f"codes must have shape {expected}, got {codes.shape}")
        want = (len(user_ids), self.meta.user_features)
        if (features is None) != (not self.meta.user_features) or (
            features is not None and np.shape(features) != want
        ):
            raise StoreError(
                f"run {self.meta.run_id} carries {self.meta.user_features} user features: "
                f"features must have shape {want}, got "
                f"{None if features is None else np.shape(features)}"
            )
        if not all(user_ids):
            raise StoreError("user ids must be non-empty")
        keys = self.store.keys.users(self.meta.run_id, user_ids)
        try:
            self._setter.set_many(keys, pack_values(codes, features), self.meta.ttl_s)
        except WriteRefused as exc:
            raise StoreError(f"Redis refused a prediction write: {exc}") from exc
        self.users_written += len(user_ids)

    def publish(self, user_count: int | None = None) -> RunMeta:
        """Record the run's metadata, add it to the record of runs and flip the pointer to it,
        in one MULTI/EXEC (one slot: the run-level keys share their hash tag).

        ``user_count`` defaults to the users this writer wrote; a resumed run should pass the
        total. Publishing the same run again is harmless (it re-points to the same keys).
        """
        count = self.users_written if user_count is None else user_count
        meta = RunMeta(**{**asdict(self.meta), "user_count": count})
        keys = self.store.keys
        expired = [i for i, m in self.store.recorded_runs().items() if m is None]
        pipe = self.store.client.pipeline(transaction=True)
        if expired:
            pipe.zrem(keys.runs, *expired)
        # The metadata lives exactly as long as the run is whole: its first user keys were
        # written after created_at, with the same TTL.
        pipe.set(keys.run(meta.run_id), meta.to_json(), pxat=int(meta.expires_at * 1000))
        pipe.zadd(keys.runs, {meta.run_id: meta.created_at})
        pipe.set(keys.pointer, meta.to_json())
        pipe.execute()
        return meta


# KEYS[1]: a run's metadata, KEYS[2]: the pointer (one slot). The metadata, or nil if it is gone.
_POINT_AT_RUN = """
local meta = redis.call('GET', KEYS[1])
if meta then redis.call('SET', KEYS[2], meta) end
return meta
"""
