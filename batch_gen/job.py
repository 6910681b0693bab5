"""The nightly batch job: user histories -> prompts -> constrained top-K SIDs -> prediction store.

A run writes every batch into its own versioned keyspace and flips the store's pointer only when
the whole run is written, so the service keeps serving the previous run until then, whatever
happens to this one. Completed batches are checkpointed to disk: rerunning the same run id after
a crash resumes where it stopped, and rerunning a published run id does nothing (idempotent).

`BatchJob` owns that bookkeeping (progress, metrics, the publish rule) and hands the batches to
an executor that searches and writes them: `LocalExecutor` in this process, or
`conrec.batch_gen.distributed.RayExecutor` over Ray workers; both write through `search_and_write`.

Seen items: SIDs of the items a user already has feedback on are excluded from their top-K
(`exclude_seen`, default on): the filter's candidates are items the user has not seen, so a slot
spent on a seen item is a slot lost.

Users policy: users with no history at the cutoff are skipped; users with history but no
negative are skipped by default (`no_negatives="skip"`, the paper's appendix D: the model is
unreliable for them), so the service fails open for them; `no_negatives="generate"` predicts
from their positives instead (with the `full` context).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from tqdm.auto import tqdm

from conrec.batch_gen.engines.base import BeamSearchEngine, ScoredSID
from conrec.batch_gen.metrics import RunMetrics
from conrec.model.prompts import Context
from conrec.model.sids import SID
from conrec.store.runs import PredictionStore, RunWriter

log = logging.getLogger(__name__)
NoNegatives = Literal["skip", "generate"]


@dataclass
class BatchJobConfig:
    run_id: str = field(metadata={"help": "Names the run; rerunning it resumes or is a no-op."})
    k: int = field(default=20, metadata={"help": "SIDs predicted per user.", "min": 1})
    batch_size: int = field(
        default=64, metadata={"help": "Users per generate/write batch.", "min": 1}
    )
    context: Context | None = field(
        default=None,
        metadata={"help": "The prompt context; none given: the one the model was trained on."},
    )
    no_negatives: NoNegatives = field(
        default="skip",
        metadata={"help": "Users with history but no negative: skipped, or predicted anyway."},
    )
    exclude_seen: bool = field(
        default=True, metadata={"help": "Never predict the SID of an item in the user's history."}
    )
    max_failure_fraction: float = field(
        default=0.01,
        metadata={"help": "Above this share of failed users the run is not published."},
    )
    checkpoint_dir: str = field(
        default="runs/batch", metadata={"help": "Where per-run progress is checkpointed."}
    )
    period_s: int = field(
        default=24 * 3600, metadata={"help": "Run period; old runs expire at 3x."}
    )


def utc_run_id() -> str:
    """the UTC date and time the run starts (20261206T101500Z)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


@dataclass
class RunSummary:
    run_id: str
    status: str  # published | already_published | not_published
    users: int
    skipped_users: int
    failed_users: int
    invalid_sids: int
    seconds: float
    users_per_s: float

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items())


@dataclass
class UserPrompt:
    user_id: str
    prompt: str
    seen: frozenset[SID] = frozenset()  # SIDs of the items in the user's history
    # The calibrated score's per-user part, stored with the prediction (None: not calibrated).
    features: np.ndarray | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one batch: users written, SIDs dropped as not in the catalogue, users left
    without a valid SID, and users whose search raised (the whole batch, retried on resume)."""

    index: int
    written: int = 0
    invalid: int = 0
    unusable: int = 0
    failed: int = 0


@dataclass
class JobProgress:
    """A run's checkpoint, `progress.json` beside the run: the batches finished, the users
    written and those left without a valid SID, and the batches that raised (index -> users),
    which a resumed run retries."""

    done: list[int] = field(default_factory=list)
    written: int = 0
    unusable: int = 0
    failed_batches: dict[int, int] = field(default_factory=dict)

    @property
    def failed_users(self) -> int:
        return self.unusable + sum(self.failed_batches.values())

    def record(self, outcome: BatchOutcome) -> None:
        if outcome.failed:
            self.failed_batches[outcome.index] = outcome.failed
            return
        self.done.append(outcome.index)
        self.written += outcome.written
        self.unusable += outcome.unusable
        self.failed_batches.pop(outcome.index, None)

    @classmethod
    def load(cls, path: Path) -> JobProgress | None:
        """The checkpoint at `path`, or None before the run's first batch."""
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        # JSON object keys are strings.
        failed = {int(index): users for index, users in raw["failed_batches"].items()}
        return cls(raw["done"], raw["written"], raw["unusable"], failed)

    def save(self, path: Path) -> None:
        """Written whole or not at all (a crash mid-write leaves the previous checkpoint)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)


class BatchExecutor(Protocol):
    def run(
        self, batches: Sequence[tuple[int, list[UserPrompt]]], writer: RunWriter
    ) -> Iterator[BatchOutcome]:
        """Search and write each (index, users) batch, yielding outcomes as batches finish."""


def search_and_write(
    engine: BeamSearchEngine,
    writer: RunWriter,
    index: int,
    users: Sequence[UserPrompt],
    catalogue_sids: set[tuple[int, ...]],
    *,
    k: int,
    levels: int,
    exclude_seen: bool,
) -> BatchOutcome:
    """One batch: top-k search, catalogue check, store write. A search that raises fails the
    batch (counted, not fatal: one bad batch must not sink the night's run)."""
    try:
        results = engine.generate_topk(
            [u.prompt for u in users], k, exclude=[u.seen for u in users] if exclude_seen else None
        )
    except Exception:
        log.exception("batch %d failed; its %d users get no prediction", index, len(users))
        return BatchOutcome(index, failed=len(users))
    written, codes, invalid, unusable = topk_codes(
        [u.user_id for u in users], results, catalogue_sids, k, levels
    )
    if written:
        features = None
        if writer.meta.user_features:
            by_id = {u.user_id: u.features for u in users}
            features = np.stack([by_id[user] for user in written])
        writer.write_batch(written, codes, features)
    return BatchOutcome(index, len(written), invalid, unusable)


class LocalExecutor:
    """Searches and writes the batches one after the other in this process."""

    def __init__(
        self,
        cfg: BatchJobConfig,
        engine: BeamSearchEngine,
        catalogue_sids: set[tuple[int, ...]],
        levels: int,
    ) -> None:
        self.cfg, self.engine, self.levels = cfg, engine, levels
        self.catalogue_sids = catalogue_sids

    def run(self, batches, writer: RunWriter) -> Iterator[BatchOutcome]:
        for index, users in batches:
            yield search_and_write(
                self.engine, writer, index, users, self.catalogue_sids, k=self.cfg.k,
                levels=self.levels, exclude_seen=self.cfg.exclude_seen,
            )  # fmt: skip


class BatchJob:
    """Orchestration only: prompts come from `conrec.model.prompts`, SIDs from the executor's
    engines."""

    def __init__(
        self,
        cfg: BatchJobConfig,
        executor: BatchExecutor,
        store: PredictionStore,
        *,
        codebook_version: str,
        model_version: str,
        levels: int,
        metrics: RunMetrics | None = None,
        user_features: int = 0,
        calibration_version: str = "",
    ):
        self.cfg = cfg
        self.executor = executor
        self.store = store
        self.codebook_version = codebook_version
        self.model_version = model_version
        self.levels = levels
        self.user_features, self.calibration_version = user_features, calibration_version
        self.metrics = metrics or RunMetrics()
        self._progress_file = Path(cfg.checkpoint_dir) / cfg.run_id / "progress.json"

    def run(self, users: Sequence[UserPrompt], skipped_users: int = 0) -> RunSummary:
        start = time.perf_counter()
        if self.store.run_meta(self.cfg.run_id) is not None:
            log.info("run %s is already published; nothing to do", self.cfg.run_id)
            return RunSummary(self.cfg.run_id, "already_published", 0, skipped_users, 0, 0, 0, 0)
        writer = self.store.begin_run(
            self.cfg.run_id,
            codebook_version=self.codebook_version,
            model_version=self.model_version,
            k=self.cfg.k,
            d=self.levels,
            period_s=self.cfg.period_s,
            user_features=self.user_features,
            calibration_version=self.calibration_version,
        )
        progress = self._load_progress()
        size = self.cfg.batch_size
        batches = [(i, list(users[s : s + size])) for i, s in enumerate(range(0, len(users), size))]
        todo = [(i, batch) for i, batch in batches if i not in progress.done]
        bar = tqdm(total=len(batches), initial=len(batches) - len(todo),
                   desc=f"batch {self.cfg.run_id}", unit="batch")  # fmt: skip
        for outcome in self.executor.run(todo, writer):
            self._record(progress, outcome)
            bar.update()
            bar.set_postfix(users=progress.written, invalid=self.metrics.invalid_count)
        bar.close()
        return self._finish(writer, progress, skipped_users, time.perf_counter() - start)

    def _record(self, progress: JobProgress, outcome: BatchOutcome) -> None:
        self.metrics.add_invalid(outcome.invalid)
        self.metrics.failures.inc(outcome.unusable + outcome.failed)
        if not outcome.failed:
            self.metrics.users.inc(outcome.written)
        progress.record(outcome)
        progress.save(self._progress_file)

    def _finish(self, writer: RunWriter, progress: JobProgress, skipped: int, seconds: float):
        """The publish rule: something written and few enough users failed."""
        failed_users = progress.failed_users
        total = progress.written + failed_users
        failed_share = failed_users / total if total else 0.0
        status = "not_published"
        if progress.written and failed_share <= self.cfg.max_failure_fraction:
            writer.publish(user_count=progress.written)
            status = "published"
            self.metrics.mark_published()
        else:
            log.error(
                "run %s not published: %d users written, %.1f%% failed; the previous run keeps "
                "serving", self.cfg.run_id, progress.written, 100 * failed_share,
            )  # fmt: skip
        self.metrics.duration.set(seconds)
        rate = progress.written / seconds if seconds else 0.0
        self.metrics.users_per_s.set(rate)
        return RunSummary(
            self.cfg.run_id, status, progress.written, skipped, failed_users,
            self.metrics.invalid_count, round(seconds, 2), round(rate, 2),
        )  # fmt: skip

    def _load_progress(self) -> JobProgress:
        progress = JobProgress.load(self._progress_file)
        if progress is None:
            return JobProgress()
        log.info("resuming run %s after %d batches", self.cfg.run_id, len(progress.done))
        return progress


def topk_codes(
    user_ids: Sequence[str],
    results: list[list[ScoredSID]],
    catalogue_sids: set[tuple[int, ...]],
    k: int,
    levels: int,
) -> tuple[list[str], np.ndarray, int, int]:
    """Store rows for an engine's results: (users with a prediction, codes [N, K, D],
    SIDs dropped as not in the catalogue, users left without any valid SID)."""
    written, rows, invalid = [], [], 0
    for user_id, scored in zip(user_ids, results, strict=True):
        valid = [tuple(sid) for sid, _ in scored if tuple(sid) in catalogue_sids]
        invalid += len(scored) - len(valid)
        if not valid:
            continue
        # A store value holds exactly K SIDs; repeating the last one leaves the max cosine the
        # service computes unchanged.
        valid += [valid[-1]] * (k - len(valid))
        written.append(user_id)
        rows.append(valid[:k])
    codes = np.asarray(rows, dtype=np.uint16).reshape(len(rows), k, levels)
    return written, codes, invalid, len(user_ids) - len(written)


def build_user_prompts(
    windows, item_sids, context: Context, no_negatives: NoNegatives, prompt_fn: Callable
) -> tuple[list[UserPrompt], int]:
    """Prompts for the users the policy keeps, and how many users it skipped."""
    users, skipped = [], 0
    for window in windows:
        if len(window.history_items) == 0:
            skipped += 1
            continue
        has_negatives = bool(window.negatives())
        if not has_negatives and no_negatives == "skip":
            skipped += 1
            continue
        ctx = context if has_negatives else "full"
        seen = frozenset(s for s in map(item_sids.sid_of, window.history_items.tolist()) if s)
        users.append(UserPrompt(window.user_id, prompt_fn(window, item_sids, context=ctx), seen))
    return users, skipped
