"""The one `conrec` command: every subcommand lives in `conrec/commands/`.

The `conrec` package is the application layer: commands and jobs that compose the parts
(codebook, model, batch_gen, service); the parts never import it. Command modules import their
heavy dependencies (torch, transformers, vllm) inside the command functions, so `conrec serve`
starts without loading torch.
"""

from __future__ import annotations

import typer

from conrec.commands import (
    backtest,
    batch,
    codebook,
    data,
    demo,
    evaluate,
    pipeline,
    report,
    serve,
    store,
    thresholds,
    train,
)
from model import distributed


def _released(*_: object, **__: object) -> None:
    """A command that succeeded under a launcher lets the ranks that followed it exit too.
    (One that failed exits with an error, and the launcher stops the other ranks.)"""
    distributed.release_followers()


app = typer.Typer(
    help="CoNRec negative-feedback filter: data, codebook, training, evaluation, nightly batch, "
    "serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    result_callback=_released,
)


@app.callback()
def _ranks() -> None:
    """Under `accelerate launch` or `torchrun`, rank 0 runs the command and the other ranks only
    join its training (`model.distributed`); without a launcher this does nothing."""
    if distributed.is_follower():
        from model.curriculum import train_curriculum

        distributed.follow_leader(train_curriculum)
        raise typer.Exit()


app.add_typer(data.app, name="data")
app.add_typer(codebook.app, name="codebook")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(thresholds.app, name="thresholds")
app.add_typer(store.app, name="store")
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("backtest")(backtest.backtest)
app.command("report")(report.report)
app.command("batch-gen")(batch.batch_gen)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)


if __name__ == "__main__":
    app()
