"""The sampled decision log: one JSON line per candidate of a sampled user's scored request.

Operators join it with later feedback to measure, in production, what the filter catches and
what it loses (`conrec report --decision-log FILE --feedback FILE`). A line::

    {"ts": 1733443200.12, "request_id": "...", "user": "3f2a...", "surface": "home",
     "mode": "enforce", "holdout": false, "item": "sku-1", "score": 0.93, "threshold": 0.9,
     "decision": "drop", "run": "2026-12-05", "codebook": "c0ffee...", "config": "2026-11-25.1"}

``decision`` is ``drop`` (removed from the page), ``would_drop`` (shadow mode or a held-out user:
kept, but above the threshold) or ``keep``; ``score`` is null for an item without a SID.
Requests write through a bounded queue to one writer thread, so the request path never waits
on the disk; lines that do not fit in the queue are counted and lost, never blocking.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

import msgspec
from prometheus_client import Counter

logger = logging.getLogger(__name__)
QUEUE_REQUESTS = 10_000


class Decision(msgspec.Struct, omit_defaults=False):
    ts: float
    request_id: str | None
    user: str
    surface: str
    mode: str
    holdout: bool
    item: str
    score: float | None
    threshold: float
    decision: str
    run: str | None
    codebook: str | None
    config: str


_encode = msgspec.json.Encoder().encode


class DecisionLog:
    """Appends batches of decisions to ``path`` from a writer thread."""

    def __init__(self, path: Path, lines: Counter, dropped: Counter) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[list[Decision] | None] = queue.Queue(QUEUE_REQUESTS)
        self._lines, self._dropped = lines, dropped
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def write(self, decisions: list[Decision]) -> None:
        """Queue one request's decisions; never blocks (a full queue loses them, counted)."""
        try:
            self._queue.put_nowait(decisions)
        except queue.Full:
            self._dropped.inc(len(decisions))

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        with self.path.open("ab") as out:
            while (batch := self._queue.get()) is not None:
                try:
                    out.write(b"".join(_encode(d) + b"\n" for d in batch))
                    # Whole batches, flushed when the queue runs dry: a reader sees whole lines.
                    if self._queue.empty():
                        out.flush()
                    self._lines.inc(len(batch))
                except (OSError, TypeError, ValueError):
                    logger.exception("decision log %s: a batch could not be written", self.path)
                    self._dropped.inc(len(batch))
