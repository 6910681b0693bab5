"""`conrec report`: the operators' threshold report, from a trained model or a published run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from conrec.batch_gen.engines.choice import Engine
from conrec.cli.options import DataOption

console = Console()


def report(
    codebook_dir: str = typer.Option("runs/codebook-ml100k", help="Codebook artifact directory."),
    model_dir: str | None = typer.Option(
        None,
        help="Predict with this trained model, as the nightly job would, at each user's "
        "midpoint cutoff.",
    ),
    redis_url: str | None = typer.Option(
        None,
        help="Or read the published run of this prediction store (batch-gen --cutoff midpoint).",
    ),
    store_path: str | None = typer.Option(
        None, help="Or read the published run of an embedded store file (the demo's)."
    ),
    decision_log: str | None = typer.Option(
        None,
        help="Or measure production: the service's decision log (CONREC_DECISION_LOG), joined "
        "with --feedback.",
    ),
    feedback: str | None = typer.Option(
        None,
        help="With --decision-log: feedback after the decisions (a prepared-tables folder, or "
        "a Parquet/CSV file of user_id, item_id, ts, polarity).",
    ),
    salt: str = typer.Option(
        "conrec",
        envvar="CONREC_USER_HASH_SALT",
        help="With --decision-log: the service's CONREC_USER_HASH_SALT (logged users are "
        "pseudonyms keyed by it).",
    ),
    data: DataOption = None,
    cutoff: str = typer.Option("midpoint", help="The cutoff the predictions were made at."),
    out: str = typer.Option("runs/report", help="Where filter_report.md and .png go."),
    engine: Annotated[Engine, typer.Option(help="Beam engine with --model-dir.")] = "hf",
) -> None:
    """The operators' threshold report: negatives caught against positives lost, per threshold.

    Over every user with a future negative or positive (users without a prediction keep every
    candidate), with the rule-based category blocker as one point on the same users; the
    threshold recommended per budget of positives lost, and a thresholds file serving the 5% one.
    """
    if sum(x is not None for x in (model_dir, redis_url, store_path, decision_log)) != 1:
        raise typer.BadParameter(
            "give exactly one of --model-dir, --redis-url, --store-path, --decision-log"
        )
    if decision_log:
        _production(decision_log, feedback, salt, out)
        return
    from conrec.report import report_on_predictions

    try:
        figures = report_on_predictions(
            codebook_dir, data, cutoff, out,
            model_dir=model_dir, redis_url=redis_url, store_path=store_path, engine=engine,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(
        f"{figures.users} users ({figures.with_prediction} with a prediction); at the "
        f"blocker's positives-lost rate {figures.blocker.positives_lost:.3f} the filter "
        f"catches {figures.caught_at_blocker_loss:.3f} of future negatives, the blocker "
        f"{figures.blocker.negatives_caught:.3f}. Report: {figures.report}"
    )
    for rec in figures.recommended:
        console.print(
            f"at most {rec.budget:.0%} of future positives lost: {rec.score} threshold "
            f"{rec.threshold:.4f} catches {rec.caught:.3f} of future negatives "
            f"(loses {rec.lost:.3f}, drops {rec.share_dropped:.3f} of a user's week)"
        )
    console.print(f"ready to serve (5% budget, {figures.served.score}): {figures.thresholds_file}")


def _production(decision_log: str, feedback: str | None, salt: str, out: str) -> None:
    from conrec.decision_report import write_production_report

    if feedback is None:
        raise typer.BadParameter("--decision-log needs --feedback")
    try:
        path, text = write_production_report(decision_log, feedback, salt, out)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(text)
    console.print(f"written to {path}")
