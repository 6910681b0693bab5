"""`conrec evaluate`: the paper's metrics for CoNRec, its ablation and the baselines. Its options
are `EvaluationConfig`'s fields."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from conrec.cli.options import DataOption, config_options
from conrec.evaluation.rows import BASELINES
from conrec.evaluation.run import EvaluationConfig


@config_options(EvaluationConfig, exclude=("baselines", "data", "models"))
def evaluate(
    cfg: EvaluationConfig,
    data: DataOption = None,
    baselines: str = typer.Option(",".join(BASELINES), help="Comma-separated baselines."),
    model: Annotated[
        list[str] | None,
        typer.Option(help="ROW=DIR: a trained model for ROW's first seed instead of training."),
    ] = None,
) -> None:
    """Train what each row needs (sharing stages), predict, score; write results.md/json + PNGs."""
    from conrec.evaluation.run import run_evaluation

    try:
        models = dict(m.split("=", 1) for m in model or [])
        names = tuple(b.strip() for b in baselines.split(",") if b.strip())
        cfg = replace(cfg, data=data, baselines=names, models=models)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    run_evaluation(cfg)
