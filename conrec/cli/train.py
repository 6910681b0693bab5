"""`conrec train`: the CoNRec curriculum from a YAML config (torch is imported lazily); a few of
the config's settings may be overridden on the command line."""

from __future__ import annotations

import json
from typing import Any

import typer

from conrec.cli.options import DataOption, override_options
from conrec.model.train_config import CurriculumConfig


@override_options(CurriculumConfig, only=("output_dir", "codebook_dir", "cutoff"))
def train(
    overrides: dict[str, Any],
    config: str = typer.Argument(
        ..., help="Curriculum YAML, e.g. model/configs/smollm2-ml100k.yaml."
    ),
    data: DataOption = None,
) -> None:
    """Train SFT (translation, alignment, warm-up) then progressive GRPO; resumable."""
    from conrec.model.curriculum import SUMMARY_FILE, run_curriculum
    from conrec.model.train_config import load_config

    cfg = load_config(config, data=data, **overrides)
    summary = run_curriculum(cfg)
    typer.echo(json.dumps(summary.eval, indent=2))
    typer.echo(f"model: {summary.final_model}  summary: {cfg.output_dir}/{SUMMARY_FILE}")
