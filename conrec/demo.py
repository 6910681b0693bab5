"""`conrec demo`: the main job end to end on ml-100k with embedded defaults."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

console = Console()


def run_demo(out: str | Path, data_dir: str | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}

    console.rule("[bold]1/2 data: ml-100k into the canonical tables")
    from model.data.sources import load_ml100k
    from model.data.splits import midpoint_cutoffs, user_windows

    ds = load_ml100k(data_dir)
    windows = list(user_windows(ds.events, midpoint_cutoffs(ds.events)))
    summary["data"] = {
        "report": ds.report.summary(),
        "users_with_future_negative": sum(bool(w.future_negatives) for w in windows),
    }
    console.print(ds.report.summary())

    console.rule("[bold]2/2 codebook: MiniLM embeddings -> RQ-VAE -> semantic IDs")
    from conrec.jobs import train_codebook

    start = time.perf_counter()
    metrics = train_codebook(out / "codebook", dataset="ml-100k", data_path=data_dir)
    summary["codebook"] = {**metrics, "seconds": round(time.perf_counter() - start, 1)}
    console.print(
        f"codebook {metrics['codebook_version']}: usage {metrics['usage_per_level']}, "
        f"perplexity {[round(p, 1) for p in metrics['perplexity_per_level']]}, "
        f"collisions {metrics['collision_rate_greedy']:.3f} greedy -> "
        f"{metrics['collision_rate']:.3f} ({metrics['collision_policy']}); "
        f"plot: {out / 'codebook' / 'training.png'}"
    )

    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.rule(f"[bold green]done: {out / 'summary.json'}")
    return summary
