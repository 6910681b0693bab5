"""`conrec backtest`: the weekly pipeline replayed at global cutoffs, every row refitted. Its
options are `BacktestConfig`'s fields."""

from __future__ import annotations

from dataclasses import replace

import typer

from conrec.cli.options import DataOption, config_options
from conrec.evaluation.backtest import BacktestConfig
from conrec.evaluation.rows import BACKTEST_BASELINES


@config_options(BacktestConfig, exclude=("baselines", "data"))
def backtest(
    cfg: BacktestConfig,
    data: DataOption = None,
    baselines: str = typer.Option(
        ",".join(BACKTEST_BASELINES), help="Comma-separated baselines, refitted at every cutoff."
    ),
) -> None:
    """What each row would have caught, week by week, had it run as the nightly job: every row
    fitted on the events before each cutoff and judged on the week after it."""
    from conrec.evaluation.backtest import run_backtest

    try:
        names = tuple(b.strip() for b in baselines.split(",") if b.strip())
        cfg = replace(cfg, data=data, baselines=names)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    run_backtest(cfg)
