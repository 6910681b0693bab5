"""`conrec report`: the operators' threshold report, from a trained model or a published run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from conrec.batch_gen.engines.choice import Engine
from conrec.commands.options import DataOption

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
        _production(decision_log, feedback, salt, Path(out))
        return
    from conrec.codebook.artifact import load_codebook, load_item_sids
    from conrec.evaluation.split import EvalSplit
    from conrec.model.data.prepared import load_tables
    from conrec.report import operators_report

    tables = load_tables(data)
    table = load_item_sids(codebook_dir)
    codebook = load_codebook(codebook_dir)
    split = EvalSplit.build(tables.events, table, cutoff=cutoff)
    calibrated = None
    if model_dir:
        from conrec.evaluation.llm import LLMPredictor

        predictor = LLMPredictor(model_dir, table, engine)
        topk = predictor.topk(predictor.prompts(split))
        predictions = {u: _codes(sids) for u, sids in topk.items()}
    else:
        found = _published(redis_url, store_path, [w.user_id for w in split.windows])
        predictions = {u: p.codes for u, p in found.items()}
        calibrated = _calibrated(codebook_dir, split, found, codebook, table)
    figures = operators_report(
        split.windows, predictions, codebook, table, tables.items, out, calibrated=calibrated
    )
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


def _production(decision_log: str, feedback: str | None, salt: str, out: Path) -> None:
    from conrec.decision_report import (
        decisions_vs_feedback,
        read_decisions,
        read_feedback,
        render,
    )

    if feedback is None:
        raise typer.BadParameter("--decision-log needs --feedback")
    try:
        table = decisions_vs_feedback(read_decisions(decision_log), read_feedback(feedback), salt)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / "production_report.md").write_text(render(table))
    table.to_csv(out / "production_report.csv", index=False)
    console.print(render(table))
    console.print(f"written to {out / 'production_report.md'}")


def _codes(sids):
    import numpy as np

    return np.asarray(sids, dtype=np.int64)


def _published(redis_url: str | None, store_path: str | None, users: list[str]) -> dict:
    """user -> Prediction of the published run, for the users that have one."""
    from conrec.store.connection import connect, stop_embedded
    from conrec.store.runs import PredictionStore

    if store_path and not Path(store_path).is_file():
        raise typer.BadParameter(f"no prediction store at {store_path}")
    client = connect(redis_url, embedded_path=store_path) if store_path else connect(redis_url)
    try:
        found = PredictionStore(client).get_many(users)
    finally:
        if store_path:
            stop_embedded(client)
    return {u: p for u, p in zip(users, found, strict=True) if p is not None}


def _calibrated(codebook_dir: str, split, found: dict, codebook, table):
    """The calibrated score's cases, as the service would score them, where the codebook has a
    calibration artifact (None otherwise): users whose prediction carries a part made for it
    get the full model, the others the item features alone."""
    from conrec.codebook.artifact import ArtifactError
    from conrec.codebook.calibration import load_calibration
    from conrec.evaluation.cases import calibrated_cases

    try:
        calibration = load_calibration(codebook_dir)
    except ArtifactError:
        return None
    parts = {
        u: p.user_features
        for u, p in found.items()
        if p.user_features is not None and p.calibration_version == calibration.version
    }
    predictions = {u: p.codes for u, p in found.items()}
    return calibrated_cases(
        split.windows, predictions, parts, calibration.aligned(table), codebook, table
    )
