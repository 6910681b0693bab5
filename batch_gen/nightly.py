"""Wires the nightly run: events + codebook + trained model -> engine -> `BatchJob` -> Redis."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from conrec.batch_gen.config import NightlyConfig
from conrec.batch_gen.engines.base import EngineConfig
from conrec.batch_gen.engines.choice import constrained_engine
from conrec.batch_gen.job import BatchJob, LocalExecutor, RunSummary, build_user_prompts
from conrec.batch_gen.metrics import RunMetrics
from conrec.codebook.versions import load_current
from conrec.model.data.splits import cutoffs_for, user_windows
from conrec.model.prompts import trained_prompter
from conrec.store.runs import PredictionStore

log = logging.getLogger(__name__)


def run_nightly(
    cfg: NightlyConfig,
    events: pd.DataFrame,
    engine_config: EngineConfig | None = None,
    store: PredictionStore | None = None,
) -> RunSummary:
    """One run over every user in `events`; returns its summary (also logged as one line).
    The run's metrics are written (and pushed) whatever its outcome, a raised error included:
    the batch alerts read the failed runs too."""
    metrics = RunMetrics()
    summary: RunSummary | None = None
    try:
        store = store or cfg.open_store()
        summary = _predict_and_publish(cfg, events, engine_config, store, metrics)
        return summary
    finally:
        succeeded = summary is not None and summary.status != "not_published"
        metrics.finish(cfg.metrics_file, succeeded=succeeded, store=store)
        if cfg.metrics_file:
            metrics.write(cfg.metrics_file)
        if cfg.metrics_push_url:
            metrics.push(cfg.metrics_push_url)


def _predict_and_publish(
    cfg: NightlyConfig,
    events: pd.DataFrame,
    engine_config: EngineConfig | None,
    store: PredictionStore,
    metrics: RunMetrics,
) -> RunSummary:
    from transformers import AutoTokenizer

    # One call for both: a codebook published meanwhile cannot pair one version's codewords
    # with another's item table.
    artifact_dir, codebook, table = load_current(cfg.codebook_dir)
    windows = list(user_windows(events, cutoffs_for(events, cfg.cutoff)))
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, local_files_only=True)
    context, prompter = trained_prompter(cfg.model_dir, tokenizer, cfg.job.context)
    users, skipped = build_user_prompts(windows, table, context, cfg.job.no_negatives, prompter)
    users = users[: cfg.max_users] if cfg.max_users else users
    log.info("%d users to predict, %d skipped by the users policy", len(users), skipped)
    calibrated = None
    if cfg.calibration:
        from conrec.batch_gen.calibration import refresh_calibration

        calibrated = refresh_calibration(cfg.calibration, artifact_dir, table, codebook, events,
                                         windows, cfg.job.run_id)  # fmt: skip
        for user in users:
            user.features = calibrated.users[user.user_id]

    engine_config = engine_config or EngineConfig(model_path=cfg.model_dir)
    catalogue_sids = set(map(tuple, table.codes.tolist()))
    if cfg.ray_workers:
        from conrec.batch_gen.distributed import RayExecutor

        executor = RayExecutor(cfg, engine_config, codebook.version, model_version(cfg.model_dir))
    else:
        engine = constrained_engine(
            cfg.engine, cfg.model_dir, tokenizer, table.codes, engine_config
        )
        executor = LocalExecutor(cfg.job, engine, catalogue_sids, codebook.levels)
    job = BatchJob(
        cfg.job,
        executor,
        store,
        codebook_version=codebook.version,
        model_version=model_version(cfg.model_dir),
        levels=codebook.levels,
        metrics=metrics,
        user_features=calibrated.width if calibrated else 0,
        calibration_version=calibrated.version if calibrated else "",
    )
    summary = job.run(users, skipped_users=skipped)
    log.info("run summary: %s", summary.line())
    return summary


def model_version(model_dir: str) -> str:
    """The model directory's name and modification time: enough to tell two nights apart."""
    path = Path(model_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(path.stat().st_mtime))
    return f"{path.name}@{stamp}"
