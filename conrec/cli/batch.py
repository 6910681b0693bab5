"""`conrec batch-gen`: the nightly run, predictions into the prediction store. Its options are
`NightlyConfig`'s fields and its job's (`BatchJobConfig`)."""

from __future__ import annotations

import logging

import typer
from rich.console import Console

from conrec.batch_gen.config import NightlyConfig
from conrec.batch_gen.job import BatchJobConfig, utc_run_id
from conrec.cli.options import DataOption, config_options

console = Console()


@config_options(
    NightlyConfig,
    nested={"job": (BatchJobConfig, ())},
    defaults={"run_id": utc_run_id},
)
def batch_gen(cfg: NightlyConfig, data: DataOption = None) -> None:
    """Predict every user's top-K negative SIDs and publish them as one new store version."""
    from conrec.batch_gen.engines.base import EngineConfig
    from conrec.batch_gen.nightly import run_nightly
    from conrec.model.data.prepared import load_tables

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    events = load_tables(data).events
    engine = EngineConfig(model_path=cfg.model_dir, batch_size=cfg.job.batch_size)
    summary = run_nightly(cfg, events, engine)
    console.print(summary.line())
    if summary.status == "not_published":
        raise typer.Exit(1)
