"""`conrec backtest`: the weekly pipeline replayed at global cutoffs, every row refitted."""

from __future__ import annotations

from typing import Annotated

import typer

from conrec.commands.choices import Engine
from conrec.commands.options import DataOption
from conrec.evaluation.rows import BACKTEST_BASELINES


def backtest(
    config: str = typer.Argument(
        "model/configs/tiny-ml100k.yaml", help="Curriculum YAML of the LLM row (CoNRec)."
    ),
    out: str = typer.Option("runs/backtest", help="Output directory; a rerun reuses it."),
    cutoffs: int = typer.Option(26, min=2, help="Weekly global cutoffs replayed."),
    every_days: float = typer.Option(7.0, min=1.0, help="Days between two cutoffs."),
    baselines: str = typer.Option(
        ",".join(BACKTEST_BASELINES), help="Comma-separated baselines, refitted at every cutoff."
    ),
    llm: bool = typer.Option(True, help="Replay the LLM row (trained on the events up to T)."),
    refit_every: int = typer.Option(4, min=1, help="Retrain the LLM at every k-th cutoff."),
    engine: Annotated[Engine, typer.Option(help="Beam engine for the LLM row.")] = Engine.hf,
    data: DataOption = None,
    codebook_dir: str | None = typer.Option(None, help="Override the config's codebook_dir."),
) -> None:
    """What each row would have caught, week by week, had it run as the nightly job: every row
    fitted on the events before each cutoff and judged on the week after it."""
    from conrec.evaluation.backtest import BacktestConfig, run_backtest
    from model.evaluation.tuning import GRIDS

    names = tuple(b.strip() for b in baselines.split(",") if b.strip())
    unknown = [b for b in names if b not in GRIDS]
    if unknown:
        raise typer.BadParameter(f"unknown baselines {unknown}; choose from {list(GRIDS)}")
    run_backtest(
        BacktestConfig(
            config=config, out=out, cutoffs=cutoffs, every_days=every_days, baselines=names,
            llm=llm, refit_every=refit_every, engine=engine.value, data=data,
            codebook_dir=codebook_dir,
        )
    )  # fmt: skip
