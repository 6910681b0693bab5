"""`conrec evaluate`: the paper's metrics for CoNRec, its ablation and the baselines."""

from __future__ import annotations

from typing import Annotated

import typer

from conrec.commands.choices import Engine, Split
from conrec.commands.options import DataOption
from conrec.evaluation.rows import BASELINES


def evaluate(
    config: str = typer.Argument(
        "model/configs/tiny-ml100k.yaml",
        help="Curriculum YAML: the CoNRec row and the base of every LLM row.",
    ),
    out: str = typer.Option("runs/eval", help="Output directory; a rerun reuses what is there."),
    seeds: int = typer.Option(3, min=1, help="Seeds of CoNRec, SFT-only and stochastic baselines."),
    first_seed: int = typer.Option(
        0, min=0, help="First seed; rows are cached per seed, so spread seeds merge."
    ),
    rows: str = typer.Option(
        "paper", help="LLM rows: all | paper | main | none, or comma-separated row keys."
    ),
    baselines: str = typer.Option(",".join(BASELINES), help="Comma-separated baselines."),
    split: Annotated[
        Split, typer.Option(help="test, or validation for choosing settings.")
    ] = Split.test,
    engine: Annotated[Engine, typer.Option(help="Beam engine for the LLM rows.")] = Engine.hf,
    data: DataOption = None,
    codebook_dir: str | None = typer.Option(None, help="Override the config's codebook_dir."),
    model: Annotated[
        list[str] | None,
        typer.Option(help="ROW=DIR: a trained model for ROW's first seed instead of training."),
    ] = None,
) -> None:
    """Train what each row needs (sharing stages), predict, score; write results.md/json + PNGs."""
    from conrec.evaluation.rows import select_rows
    from conrec.evaluation.run import EvaluationConfig, run_evaluation

    names = tuple(b.strip() for b in baselines.split(",") if b.strip())
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        raise typer.BadParameter(f"unknown baselines {unknown}; choose from {list(BASELINES)}")
    try:
        select_rows(rows)
        models = dict(m.split("=", 1) for m in model or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    run_evaluation(
        EvaluationConfig(
            config=config, out=out, seeds=seeds, first_seed=first_seed, rows=rows,
            baselines=names, split=split.value, engine=engine.value, data=data,
            codebook_dir=codebook_dir, models=models,
        )
    )  # fmt: skip
