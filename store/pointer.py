"""The published-run pointer as a reader last read it."""

from __future__ import annotations

import time

from conrec.store.values import RunMeta


class PointerCache:
    """The published run as last read, re-read at most every ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._value: tuple[float, RunMeta | None] = (-float("inf"), None)
        self.known = False  # whether the pointer was ever read

    def fresh(self) -> tuple[bool, RunMeta | None]:
        fetched_at, meta = self._value
        return time.monotonic() - fetched_at < self.ttl_s, meta

    def store(self, raw: bytes | None) -> RunMeta | None:
        meta = None if raw is None else RunMeta.from_json(raw)
        # One tuple assignment: concurrent readers see the old or the new pair, never a mix.
        self._value = (time.monotonic(), meta)
        self.known = True
        return meta

    def keep(self) -> RunMeta | None:
        """After a failed re-read: the run as last read, used until the next re-read is due,
        so that a pointer that cannot be read is retried every ``ttl_s``, not per request.
        None when nothing was read yet or that run has expired (its values are gone)."""
        _, meta = self._value
        if not self.known or (meta is not None and meta.expires_at <= time.time()):
            return None
        self._value = (time.monotonic(), meta)
        return meta
