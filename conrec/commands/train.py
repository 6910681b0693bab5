"""`conrec train`: the CoNRec curriculum from a YAML config (torch is imported lazily)."""

from __future__ import annotations

import json

import typer

from conrec.commands.options import DataOption


def train(
    config: str = typer.Argument(
        ..., help="Curriculum YAML, e.g. model/configs/smollm2-ml100k.yaml."
    ),
    output_dir: str | None = typer.Option(None, help="Override the config's output_dir."),
    codebook_dir: str | None = typer.Option(None, help="Override the config's codebook_dir."),
    data: DataOption = None,
    cutoff: str | None = typer.Option(None, help="Override the config's evaluation cutoff."),
) -> None:
    """Train SFT (translation, alignment, warm-up) then progressive GRPO; resumable."""
    from model.curriculum import SUMMARY_FILE, run_curriculum
    from model.train_config import load_config

    cfg = load_config(
        config, output_dir=output_dir, codebook_dir=codebook_dir, data=data, cutoff=cutoff
    )
    summary = run_curriculum(cfg)
    typer.echo(json.dumps(summary["eval"], indent=2))
    typer.echo(f"model: {summary['final_model']}  summary: {cfg.output_dir}/{SUMMARY_FILE}")
