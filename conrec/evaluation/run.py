"""`conrec evaluate`: baselines and LLM rows on one split, every (row, seed) cached on disk.

Layout of the output directory:

    rows/<row>-s<seed>.json   one run's top-k per user and candidate scores (reused on rerun)
    stages/                   curriculum stages, shared by every LLM row and seed that agree
    models/<row>-s<seed>/     each LLM row's curriculum output (final model, summary)
    results.json, results.md, metrics.png, threshold_sweep.png   (`conrec.evaluation.results`)

A rerun recomputes nothing that is cached, so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from codebook.artifact import CODEBOOK_FILE, load_item_sids
from conrec.evaluation.llm import llm_outputs
from conrec.evaluation.rows import BASELINES, LLM_ROWS, STOCHASTIC_BASELINES, select_rows
from model.data.prepared import load_tables
from model.data.sources import DataTables
from model.data.splits import cutoffs_for, validation_spec
from model.evaluation.baselines import Catalogue
from model.evaluation.metrics import CANDIDATE_METRIC, candidate_hits, topk_hits
from model.evaluation.split import SPLITS, EvalSplit
from model.evaluation.users import visible_events
from model.train_config import CurriculumConfig, load_config

console = Console()


@dataclass
class EvaluationConfig:
    config: str = field(
        metadata={"help": "Curriculum YAML: the CoNRec row, and every LLM row's base."}
    )
    out: str = field(metadata={"help": "Output directory (cache, models, results)."})
    seeds: int = field(
        default=3, metadata={"help": "Seeds of CoNRec, SFT-only and stochastic baselines."}
    )
    first_seed: int = field(
        default=0,
        metadata={
            "help": "Seeds run are first_seed .. first_seed + seeds - 1. Rows are cached per "
            "seed, so seeds spread over processes or machines merge by copying rows/."
        },
    )
    rows: str = field(
        default="paper", metadata={"help": "LLM rows: all | paper | main | none | keys."}
    )
    baselines: tuple[str, ...] = field(default=BASELINES, metadata={"help": "Baselines to run."})
    split: str = field(default="test", metadata={"help": "test | validation (tuning)."})
    engine: str = field(default="hf", metadata={"help": "Beam engine for LLM rows: hf | vllm."})
    k: int = field(default=20, metadata={"help": "Predictions per user."})
    data: str | None = field(
        default=None, metadata={"help": "Prepared-tables folder; None: the config's."}
    )
    codebook_dir: str | None = field(default=None, metadata={"help": "Override the config's."})
    models: dict[str, str] = field(
        default_factory=dict, metadata={"help": "row -> trained model dir, used for seed 0."}
    )

    @property
    def seed_range(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)


@dataclass
class RowRun:
    """One (row, seed) on the split: per-user hits of every metric, and how it was made."""

    key: str
    seed: int
    hits: dict[str, np.ndarray]  # metric -> [users] (or [candidate sets]) 1 / 0 / NaN
    info: dict


def run_evaluation(cfg: EvaluationConfig, dataset: DataTables | None = None) -> dict:
    """Evaluate every requested row; write and return the results."""
    from conrec.evaluation.results import write_results

    start = time.perf_counter()
    if cfg.split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    out = Path(cfg.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    base = load_config(
        cfg.config,
        codebook_dir=cfg.codebook_dir,
        data=cfg.data,
        output_dir=str(out / "models"),
    )
    data = dataset or load_tables(base.data)
    if cfg.split == "validation":
        # The validation split is the test split of the data cut at the test cutoff: training
        # and tuning on it never see the reported future.
        data = dataclasses.replace(data, events=_before_test_cutoff(data, base.cutoff))
        base = dataclasses.replace(base, cutoff=validation_spec(base.cutoff))
    _ensure_codebook(base, cfg)
    table = load_item_sids(base.codebook_dir)
    catalogue = Catalogue.of(table, data.items)
    split = EvalSplit.build(data.events, table, "test", base.cutoff)
    validation = EvalSplit.build(data.events, table, "validation", base.cutoff)
    console.print(f"split {cfg.split}: {split.populations()}")

    runs = [
        r
        for name in cfg.baselines
        for r in _baseline_runs(name, cfg, split, validation, catalogue, out)
    ]
    for key in select_rows(cfg.rows):
        runs += _llm_runs(key, cfg, base, data, split, table, out)
    results = write_results(
        runs,
        split,
        out,
        cfg=cfg,
        data=data,
        table=table,
        seconds=time.perf_counter() - start,
        machine=machine(),
    )
    console.rule(f"[bold green]evaluation written to {out / 'results.md'}")
    return results


def score_run(split: EvalSplit, predictions: dict, candidate_scores: list, k: int) -> dict:
    """Per-user hits of every metric for one run's outputs."""
    hits = topk_hits(split.users, predictions, k)
    hits[CANDIDATE_METRIC] = candidate_hits(candidate_scores)
    return hits


def machine() -> dict:
    import os

    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _before_test_cutoff(data: DataTables, cutoff: str):
    return visible_events(data.events, cutoffs_for(data.events, cutoff)).reset_index(drop=True)


def _ensure_codebook(base: CurriculumConfig, cfg: EvaluationConfig) -> None:
    if (Path(base.codebook_dir) / CODEBOOK_FILE).is_file():
        return
    from conrec.codebook_training import train_codebook

    console.rule(f"codebook: none at {base.codebook_dir}, training one")
    train_codebook(base.codebook_dir, data=base.data)


def _cached(path: Path, compute) -> dict:
    """The JSON at `path`, computed (and written) first if absent."""
    if path.is_file():
        return json.loads(path.read_text())
    start = time.perf_counter()
    payload = compute()
    payload["seconds"] = round(time.perf_counter() - start, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, default=float))
    tmp.replace(path)
    return payload


def _outputs(predictions: dict, candidate_scores: list) -> dict:
    return {
        "predictions": {u: [list(map(int, s)) for s in sids] for u, sids in predictions.items()},
        "candidate_scores": [np.asarray(s, dtype=float).tolist() for s in candidate_scores],
    }


def _run(key: str, seed: int, payload: dict, split: EvalSplit, k: int) -> RowRun:
    predictions = {u: [tuple(s) for s in sids] for u, sids in payload["predictions"].items()}
    scores = [np.asarray(s) for s in payload["candidate_scores"]]
    info = {
        name: v for name, v in payload.items() if name not in ("predictions", "candidate_scores")
    }
    return RowRun(key, seed, score_run(split, predictions, scores, k), info)


def _baseline_runs(name, cfg, split, validation, catalogue, out: Path) -> list[RowRun]:
    from model.evaluation.tuning import baseline_outputs, make_baseline, tune

    console.rule(f"baseline {name}")
    tuning = _cached(
        out / "rows" / f"{name}-tuning.json",
        lambda: dict(
            zip(("choice", "validation_fhr"), tune(name, validation, catalogue, cfg.k), strict=True)
        ),
    )
    seeds = cfg.seed_range if name in STOCHASTIC_BASELINES else [0]
    runs = []
    for seed in seeds:

        def compute(seed=seed):
            baseline = make_baseline(name, catalogue, tuning["choice"], seed)
            return {
                **_outputs(*baseline_outputs(baseline, split, catalogue, cfg.k)),
                "kind": "baseline",
                "choice": tuning["choice"],
            }

        payload = _cached(out / "rows" / f"{name}-s{seed}.json", compute)
        runs.append(_run(name, seed, {**payload, "tuning": tuning}, split, cfg.k))
    return runs


def _llm_runs(key, cfg, base, data, split, table, out: Path) -> list[RowRun]:
    from model.curriculum import run_curriculum

    row = LLM_ROWS[key]
    runs = []
    for seed in cfg.seed_range if row.all_seeds else cfg.seed_range[:1]:
        console.rule(f"{key} (seed {seed}): {row.label}")

        def compute(seed=seed):
            model_dir, summary = cfg.models.get(key) if seed == 0 else None, {}
            if not model_dir:
                row_cfg = dataclasses.replace(
                    row.change(base),
                    seed=seed,
                    stages_dir=str(out / "stages"),
                    output_dir=str(out / "models" / f"{key}-s{seed}"),
                )
                summary = run_curriculum(row_cfg, data)
                model_dir = summary["final_model"]
            start = time.perf_counter()
            outputs = _outputs(*llm_outputs(model_dir, split, table, k=cfg.k, engine=cfg.engine))
            return {
                **outputs,
                "kind": "llm",
                "model_dir": str(model_dir),
                "train": {
                    "eval": summary.get("eval"),
                    "stages": {s: m.get("seconds") for s, m in summary.get("stages", {}).items()},
                },
                "predict_seconds": round(time.perf_counter() - start, 1),
                "machine": machine(),  # rows merged from other machines say where they ran
            }

        payload = _cached(out / "rows" / f"{key}-s{seed}.json", compute)
        runs.append(_run(key, seed, payload, split, cfg.k))
    return runs
