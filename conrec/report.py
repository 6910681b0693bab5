"""The operators' threshold report: for each threshold, how many of users' future negatives the
filter catches and how many of their future positives it loses, next to the rule-based category
blocker (paper fig. 1) as one point; the threshold it recommends per budget of positives lost;
and a thresholds file ready to serve. Output: a Markdown table, a PNG and a YAML file.

Candidates are each user's real next seven days after the cutoff the predictions were made at;
scores are the service's own (`conrec.evaluation.cases.served_cases`). The population is every
user with at least one future negative or positive; a user without a prediction keeps every
candidate, as the service fails open for them. A recommended threshold is the lowest that loses
at most its budget of the report's future positives (`conrec.evaluation.decision.threshold_at`):
chosen on the cutoff the report is run at, to be served after it.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from conrec.codebook.artifact import Codebook, ItemSIDTable
from conrec.codebook.figures import pyplot
from conrec.evaluation.baselines import Catalogue, CategoryBlocker
from conrec.evaluation.cases import decision_population, scored_cases, served_cases
from conrec.evaluation.decision import (
    BUDGETS,
    DecisionCase,
    budget_label,
    rates,
    share_dropped,
    threshold_at,
)
from conrec.model.data.splits import UserWindow

THRESHOLDS = tuple(np.round(np.arange(0.50, 1.0001, 0.02), 2))
THRESHOLDS_FILE = "thresholds.yaml"
# The budget the ready thresholds file serves by default: at most 5% of future positives lost.
SERVED_BUDGET = 0.05


@dataclass(frozen=True)
class OperatingPoint:
    """What a keep/drop rule does to the population's week after the cutoff."""

    negatives_caught: float
    positives_lost: float


@dataclass(frozen=True)
class Recommendation:
    budget: float
    threshold: float
    caught: float
    lost: float
    share_dropped: float
    score: str = "max_cosine"


def recommend(
    cases: Sequence[DecisionCase], budgets: Iterable[float] = BUDGETS, score: str = "max_cosine"
) -> list[Recommendation]:
    """Per budget of positives lost, the lowest threshold within it and what it does."""
    out = []
    for budget in budgets:
        threshold = threshold_at(cases, budget)
        caught, lost = rates(cases, threshold)
        dropped = share_dropped(cases, threshold)
        out.append(Recommendation(budget, threshold, caught, lost, dropped, score))
    return out


def threshold_sweep(
    cases: Sequence[DecisionCase], thresholds: Iterable[float] = THRESHOLDS
) -> pd.DataFrame:
    """Per threshold: share of future negatives dropped (caught) and of positives dropped (lost)."""
    rows = []
    for t in thresholds:
        caught, lost = rates(cases, t)
        rows.append({"threshold": float(t), "negatives_caught": caught, "positives_lost": lost})
    return pd.DataFrame(rows)


def caught_at(sweep: pd.DataFrame, positives_lost: float) -> float:
    """Future negatives caught by the sweep, interpolated at a given positives-lost rate."""
    ordered = sweep.sort_values(["positives_lost", "negatives_caught"])
    return float(np.interp(positives_lost, ordered["positives_lost"], ordered["negatives_caught"]))


def category_blocker(
    windows: Iterable[UserWindow], item_sids: ItemSIDTable, items: pd.DataFrame
) -> OperatingPoint:
    """The rule-based baseline over the report's population: block every category of every
    item the user disliked (`CategoryBlocker`, variant `any`)."""
    blocker = CategoryBlocker(Catalogue.of(item_sids, items), variant="any")
    population = decision_population(windows)
    # Its `any` score is 1 for a blocked item, plus a tie-break below one: blocked <=> >= 1.
    blocked = {w.user_id: (blocker.scores(w) >= 1.0).astype(np.float64) for w in population}
    caught, lost = rates(scored_cases(population, blocked, item_sids.item_ids.tolist()), 0.5)
    return OperatingPoint(negatives_caught=caught, positives_lost=lost)


@dataclass(frozen=True)
class OperatorsReport:
    """The figures `operators_report` shows, and where it wrote the report and the thresholds
    file."""

    report: Path
    thresholds_file: Path
    users: int  # with a future negative or positive
    with_prediction: int
    blocker: OperatingPoint
    caught_at_blocker_loss: float  # by the filter, losing as much as the blocker
    recommended: list[Recommendation]
    served: Recommendation  # the one the thresholds file serves
    table: list[dict[str, float]]  # the sweep: threshold, negatives_caught, positives_lost

    def to_json(self) -> dict:
        """As results.json and the demo's summary.json hold it."""
        return {**asdict(self), "report": str(self.report),
                "thresholds_file": str(self.thresholds_file)}  # fmt: skip


def operators_report(
    windows: list[UserWindow],
    predictions: Mapping[str, np.ndarray],
    codebook: Codebook,
    item_sids: ItemSIDTable,
    items: pd.DataFrame,
    out_dir: str | Path,
    budget: float = SERVED_BUDGET,
    calibrated: Sequence[DecisionCase] | None = None,
) -> OperatorsReport:
    """Sweep, blocker point, recommendations and report files for `predictions` ([K, D] codes
    per user) at the cutoff of `windows`; returns the figures the report shows. With the
    calibrated score's cases (`conrec.evaluation.cases.calibrated_cases`), each budget gets a
    recommendation per score, and the thresholds file serves the score that catches more at
    `budget`."""
    cases = served_cases(windows, predictions, codebook, item_sids)
    sweep = threshold_sweep(cases)
    blocker = category_blocker(windows, item_sids, items)
    budgets = sorted({*BUDGETS, budget})
    recommended = recommend(cases, budgets)
    if calibrated is not None:
        recommended += recommend(calibrated, budgets, score="calibrated")
    out = Path(out_dir)
    path = write_report(sweep, blocker, recommended, out)
    served = max((r for r in recommended if r.budget == budget), key=lambda r: r.caught)
    thresholds = write_thresholds(
        out / THRESHOLDS_FILE,
        served.threshold,
        f"the lowest {served.score} threshold losing at most {budget_label(budget)} of the "
        f"future positives of {len(cases)} users in their week after the report's cutoff "
        f"(`conrec report`): caught {served.caught:.3f} of their future negatives, lost "
        f"{served.lost:.3f}",
        score=served.score,
    )
    population = decision_population(windows)
    return OperatorsReport(
        report=path,
        thresholds_file=thresholds,
        users=len(population),
        with_prediction=sum(w.user_id in predictions for w in population),
        blocker=blocker,
        caught_at_blocker_loss=caught_at(sweep, blocker.positives_lost),
        recommended=recommended,
        served=served,
        table=sweep.to_dict("records"),
    )


def report_on_predictions(
    codebook_dir: str | Path,
    data: str | None,
    cutoff: str,
    out: str | Path,
    *,
    model_dir: str | None = None,
    redis_url: str | None = None,
    store_path: str | None = None,
    engine: str = "hf",
) -> OperatorsReport:
    """`operators_report` on the predictions made at `cutoff` by exactly one source: a trained
    model (predicting as the nightly job would), a store's published run, or an embedded store
    file's. A published run is also scored by the calibrated score where the codebook has a
    calibration artifact, as the service would score it."""
    from conrec.codebook.artifact import load_codebook, load_item_sids
    from conrec.evaluation.split import EvalSplit
    from conrec.model.data.prepared import load_tables

    if sum(x is not None for x in (model_dir, redis_url, store_path)) != 1:
        raise ValueError("give exactly one of a model, a store's URL or a store file")
    tables = load_tables(data)
    table = load_item_sids(codebook_dir)
    codebook = load_codebook(codebook_dir)
    split = EvalSplit.build(tables.events, table, cutoff=cutoff)
    calibrated = None
    if model_dir:
        from conrec.evaluation.llm import LLMPredictor

        predictor = LLMPredictor(model_dir, table, engine)
        topk = predictor.topk(predictor.prompts(split))
        predictions = {u: np.asarray(sids, dtype=np.int64) for u, sids in topk.items()}
    else:
        found = published(redis_url, store_path, [w.user_id for w in split.windows])
        predictions = {u: p.codes for u, p in found.items()}
        calibrated = _calibrated(codebook_dir, split, found, codebook, table)
    return operators_report(
        split.windows, predictions, codebook, table, tables.items, out, calibrated=calibrated
    )


def published(redis_url: str | None, store_path: str | None, users: list[str]) -> dict:
    """user -> `Prediction` of the published run, for the users that have one."""
    from conrec.store.connection import visiting
    from conrec.store.runs import PredictionStore

    with visiting(redis_url, embedded_path=store_path) as client:
        found = PredictionStore(client).get_many(users)
    return {u: p for u, p in zip(users, found, strict=True) if p is not None}


def _calibrated(codebook_dir, split, found: dict, codebook: Codebook, table: ItemSIDTable):
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


def write_thresholds(
    path: str | Path, threshold: float, how: str, score: str = "max_cosine", by: str = "report"
) -> Path:
    """A thresholds file (`conrec.service.core.thresholds`) serving `threshold` of `score`
    everywhere, saying in its comments how the value was chosen."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "version": time.strftime(f"{by}-%Y%m%dT%H%M%S"),
        "default": float(threshold),
        "mode": "enforce",
        "score": score,
    }
    header = textwrap.wrap(f"Written by `conrec {by}`. The threshold is {how}.", 96)
    comments = "".join(f"# {line}\n" for line in header)
    path.write_text(comments + yaml.safe_dump(body, sort_keys=False))
    return path


def write_report(
    sweep: pd.DataFrame,
    blocker: OperatingPoint,
    recommended: Sequence[Recommendation],
    out_dir: str | Path,
) -> Path:
    """`filter_report.md` and `filter_report.png` in `out_dir`; returns the Markdown path."""
    plt = pyplot()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(sweep["positives_lost"], sweep["negatives_caught"], marker="o", ms=3, label="filter")
    for row in sweep.iloc[::5].itertuples():
        ax.annotate(f"{row.threshold:.2f}", (row.positives_lost, row.negatives_caught), fontsize=7)
    ax.scatter(
        [blocker.positives_lost], [blocker.negatives_caught], color="tab:red", marker="x",
        s=80, label="category blocker",
    )  # fmt: skip
    for score, color in (("max_cosine", "tab:green"), ("calibrated", "tab:purple")):
        points = [r for r in recommended if r.score == score]
        if points:
            ax.scatter([r.lost for r in points], [r.caught for r in points], color=color,
                       marker="s", s=30, label=f"recommended, {score} (per budget)")  # fmt: skip
    ax.set(
        xlabel="future positives lost (share dropped)",
        ylabel="future negatives caught (share dropped)",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        title="filter threshold sweep (labels: threshold)",
    )
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "filter_report.png", dpi=110)
    plt.close(fig)

    lines = [
        "# Filter threshold report",
        "",
        "A candidate is dropped when its max cosine to the user's predicted negatives is above the",
        "threshold. Caught: share of the users' real future-7-day negatives dropped; lost: share",
        "of their future positives dropped; dropped: mean share of a user's next-7-day items.",
        "",
        "![sweep](filter_report.png)",
        "",
        "## Recommended thresholds",
        "",
        "| budget of positives lost | score | threshold | negatives caught | positives lost | "
        "dropped |",
        "|---|---|---|---|---|---|",
        *(
            f"| {budget_label(r.budget)} | {r.score} | {r.threshold:.4f} | {r.caught:.3f} | "
            f"{r.lost:.3f} | {r.share_dropped:.3f} |"
            for r in recommended
        ),
        "",
        f"`{THRESHOLDS_FILE}` beside this report serves the {budget_label(SERVED_BUDGET)} "
        "threshold of the score that catches more there; check it with `conrec thresholds "
        "check` before it ships.",
        "",
        "## Sweep",
        "",
        "| threshold | negatives caught | positives lost |",
        "|---|---|---|",
        *(
            f"| {r.threshold:.2f} | {r.negatives_caught:.3f} | {r.positives_lost:.3f} |"
            for r in sweep.itertuples()
        ),
        f"| category blocker | {blocker.negatives_caught:.3f} | {blocker.positives_lost:.3f} |",
    ]
    path = out / "filter_report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
