"""`conrec evaluate`: baselines and LLM rows on one split, every (row, seed) cached on disk.

Each row is also run on the split's validation split (its first seed), where the baselines'
settings and every row's decision thresholds are chosen. Layout of the output directory:

    rows/<row>-s<seed>.json   one run's top-k per user, candidate scores and (baselines) their
                              own scores of each user's future items (reused on rerun)
    rows/validation/          the same on the validation split
    stages/                   curriculum stages, shared by every LLM row and seed that agree
    models/<row>-s<seed>/     each LLM row's curriculum output (final model, summary)
    models/validation/        the LLM rows trained on the validation split's data
    results.json, results.md, metrics.png, decision.png   (`conrec.evaluation.results`)

A rerun recomputes nothing that is cached, so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from conrec.batch_gen.engines.choice import Engine
from conrec.codebook.artifact import (
    CODEBOOK_FILE,
    Codebook,
    ItemSIDTable,
    load_codebook,
    load_item_sids,
)
from conrec.evaluation.baselines import Catalogue
from conrec.evaluation.calibrated import calibrated_rows
from conrec.evaluation.cases import served_cases
from conrec.evaluation.decision import DecisionCase
from conrec.evaluation.list_metrics import (
    CANDIDATE_METRIC,
    SERVED_CANDIDATE_METRIC,
    candidate_hits,
    topk_hits,
)
from conrec.evaluation.llm import llm_outputs
from conrec.evaluation.rows import BASELINES, LLM_ROWS, STOCHASTIC_BASELINES, select_rows
from conrec.evaluation.split import DEFAULT_BUCKETS, SPLITS, EvalSplit, Split
from conrec.evaluation.users import own_history_events
from conrec.model.calibration import CalibrationSettings
from conrec.model.data.prepared import load_tables
from conrec.model.data.sources import DataTables
from conrec.model.data.splits import cutoffs_for, validation_spec
from conrec.model.train_config import CurriculumConfig, load_config

if TYPE_CHECKING:
    from conrec.evaluation.results import EvaluationResults

console = Console()


@dataclass
class EvaluationConfig:
    config: str = field(
        default="model/configs/tiny-ml100k.yaml",
        metadata={"help": "Curriculum YAML: the CoNRec row, and every LLM row's base.",
                  "argument": True},
    )  # fmt: skip
    out: str = field(
        default="runs/eval",
        metadata={"help": "Output directory (cache, models, results); a rerun reuses what is "
                  "there."},
    )  # fmt: skip
    seeds: int = field(
        default=3,
        metadata={"help": "Seeds of CoNRec, SFT-only and stochastic baselines.", "min": 1},
    )
    first_seed: int = field(
        default=0,
        metadata={
            "help": "Seeds run are first_seed .. first_seed + seeds - 1. Rows are cached per "
            "seed, so seeds spread over processes or machines merge by copying rows/.",
            "min": 0,
        },
    )
    rows: str = field(
        default="paper",
        metadata={"help": "LLM rows: all | paper | main | none, or comma-separated row keys."},
    )
    baselines: tuple[str, ...] = field(default=BASELINES, metadata={"help": "Baselines to run."})
    split: Split = field(
        default="test", metadata={"help": "The split scored: test, or validation for tuning."}
    )
    engine: Engine = field(default="hf", metadata={"help": "Beam engine of the LLM rows."})
    k: int = field(default=20, metadata={"help": "Predictions per user.", "min": 1})
    buckets: int = field(
        default=DEFAULT_BUCKETS,
        metadata={
            "help": "Fits per split of the baselines that are models (Swing, factorisation, "
            "SASRec), each at the earliest cutoff of its bucket of users.",
            "min": 1,
        },
    )
    data: str | None = field(
        default=None, metadata={"help": "Prepared-tables folder; None: the config's."}
    )
    codebook_dir: str | None = field(
        default=None, metadata={"help": "A codebook artifact instead of the config's."}
    )
    models: dict[str, str] = field(
        default_factory=dict, metadata={"help": "row -> trained model dir, used for seed 0."}
    )

    def __post_init__(self) -> None:
        if unknown := [b for b in self.baselines if b not in BASELINES]:
            raise ValueError(f"unknown baselines {unknown}; choose from {list(BASELINES)}")
        select_rows(self.rows)  # raises on an unknown row

    @property
    def seed_range(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)


@dataclass
class RowRun:
    """One (row, seed) on the split: per-user hits of every list metric, the row's decision
    cases (by score kind: `max_cosine`, its top-k through the served path; `own`, a baseline's
    own score) on the split and on its validation split, and how it was made."""

    key: str
    seed: int
    hits: dict[str, np.ndarray]  # metric -> [users] (or [candidate sets]) 1 / 0 / NaN
    cases: dict[str, list[DecisionCase]]
    validation_cases: dict[str, list[DecisionCase]]
    info: dict


@dataclass(frozen=True)
class Scene:
    """One split with what its rows are scored with."""

    name: str  # "test" or "validation": the rows/ and models/ subfolder ("" for the reported)
    data: DataTables
    base: CurriculumConfig
    split: EvalSplit
    catalogue: Catalogue
    codebook: Codebook
    table: ItemSIDTable

    def served(self, predictions: dict) -> list[DecisionCase]:
        codes = {u: np.asarray(s, dtype=np.int64) for u, s in predictions.items()}
        return served_cases(self.split.windows, codes, self.codebook, self.table)


def run_evaluation(cfg: EvaluationConfig, dataset: DataTables | None = None) -> EvaluationResults:
    """Evaluate every requested row; write and return the results."""
    from conrec.evaluation.results import write_results

    start = time.perf_counter()
    if cfg.split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    out = Path(cfg.out)
    (out / "rows" / "validation").mkdir(parents=True, exist_ok=True)
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
        data, base = earlier(data, base)
    _ensure_codebook(base, cfg)
    table = load_item_sids(base.codebook_dir)
    codebook = load_codebook(base.codebook_dir)
    catalogue = Catalogue.of(table, data.items)
    scenes = {}
    for name, (d, b) in (("", (data, base)), ("validation", earlier(data, base))):
        split = EvalSplit.build(d.events, table, "test", b.cutoff, cfg.buckets)
        scenes[name] = Scene(name, d, b, split, catalogue, codebook, table)
    console.print(f"split {cfg.split}: {scenes[''].split.populations()}")

    runs = [r for name in cfg.baselines for r in _baseline_runs(name, cfg, scenes, out)]
    for key in select_rows(cfg.rows):
        runs += _llm_runs(key, cfg, scenes, out)
    console.rule("calibrated score: fitted on the validation split")
    served = "conrec" if any(r.key == "conrec" for r in runs) else None
    calibrated = calibrated_rows(
        scenes, out, served, [r.seed for r in runs if r.key == served], CalibrationSettings()
    )
    results = write_results(
        runs,
        scenes[""].split,
        out,
        cfg=cfg,
        data=data,
        table=table,
        codebook=codebook,
        validation=scenes["validation"].split,
        calibrated=calibrated,
        seconds=time.perf_counter() - start,
        machine=machine(),
    )
    console.rule(f"[bold green]evaluation written to {out / 'results.md'}")
    return results


def earlier(data: DataTables, base: CurriculumConfig) -> tuple[DataTables, CurriculumConfig]:
    """The validation split's data and config: each event kept up to its owner's cutoff, and
    the cutoff spec applied again to what is left (`validation_spec`)."""
    events = own_history_events(data.events, cutoffs_for(data.events, base.cutoff))
    return (
        dataclasses.replace(data, events=events.reset_index(drop=True)),
        dataclasses.replace(base, cutoff=validation_spec(base.cutoff)),
    )


def score_run(scene: Scene, predictions: dict, candidate_scores: list, k: int) -> dict:
    """Per-user hits of every list metric, and Candidate Accuracy by the row's own score and by
    the served max cosine to its top-k."""
    split = scene.split
    hits = topk_hits(split.users, predictions, k)
    hits[CANDIDATE_METRIC] = candidate_hits(candidate_scores)
    served = []
    for c in split.candidates:
        pred = predictions.get(c.user_id)
        codes = np.asarray([scene.table.sid_of(i) for i in c.items], dtype=np.int64)
        if pred is None or not len(pred):
            served.append(np.zeros(len(codes)))
        else:
            served.append(_max_cosine(scene, codes, pred))
    hits[SERVED_CANDIDATE_METRIC] = candidate_hits(served)
    return hits


def _max_cosine(scene: Scene, codes: np.ndarray, pred) -> np.ndarray:
    from conrec.codebook.similarity import max_cosine

    return max_cosine(scene.codebook, codes, np.asarray(pred, dtype=np.int64))


def machine() -> dict:
    import os

    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


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


def _outputs(predictions: dict, candidate_scores: list, cases: list | None = None) -> dict:
    out = {
        "predictions": {u: [list(map(int, s)) for s in sids] for u, sids in predictions.items()},
        "candidate_scores": [np.asarray(s, dtype=float).tolist() for s in candidate_scores],
    }
    if cases is not None:
        out["cases"] = [
            [c.user_id, c.negatives.tolist(), c.positives.tolist(), c.others.tolist()]
            for c in cases
        ]
    return out


def _read(payload: dict) -> tuple[dict, list, dict[str, list[DecisionCase]]]:
    predictions = {u: [tuple(s) for s in sids] for u, sids in payload["predictions"].items()}
    scores = [np.asarray(s, dtype=np.float64) for s in payload["candidate_scores"]]
    own = [
        DecisionCase(u, *(np.asarray(x, dtype=np.float64) for x in (neg, pos, others)))
        for u, neg, pos, others in payload.get("cases", [])
    ]
    return predictions, scores, ({"own": own} if "cases" in payload else {})


def _cases(scene: Scene, payload: dict) -> dict[str, list[DecisionCase]]:
    predictions, _, own = _read(payload)
    return {"max_cosine": scene.served(predictions), **own}


def _run(key: str, seed: int, payload: dict, validation: dict, scenes, k: int) -> RowRun:
    scene = scenes[""]
    predictions, scores, _ = _read(payload)
    info = {
        name: v
        for name, v in payload.items()
        if name not in ("predictions", "candidate_scores", "cases")
    }
    return RowRun(
        key,
        seed,
        score_run(scene, predictions, scores, k),
        _cases(scene, payload),
        _cases(scenes["validation"], validation),
        info,
    )


def _rows_path(out: Path, scene: Scene, key: str, seed: int) -> Path:
    return out / "rows" / scene.name / f"{key}-s{seed}.json"


def _baseline_runs(name, cfg, scenes: dict[str, Scene], out: Path) -> list[RowRun]:
    from conrec.evaluation.tuning import baseline_outputs, make_baseline, tune

    console.rule(f"baseline {name}")
    validation = scenes["validation"]
    tuning = _cached(
        out / "rows" / f"{name}-tuning.json",
        lambda: dict(
            zip(
                ("choice", "validation_figure"),
                tune(name, validation.split, validation.catalogue, cfg.k),
                strict=True,
            )
        ),
    )

    def compute(scene: Scene, seed: int) -> dict:
        baseline = make_baseline(name, scene.catalogue, tuning["choice"], seed)
        found = baseline_outputs(baseline, scene.split, scene.catalogue, cfg.k)
        return {
            **_outputs(found.predictions, found.candidate_scores, found.cases),
            "kind": "baseline",
            "choice": tuning["choice"],
        }

    first = cfg.seed_range[0]
    on_validation = _cached(
        _rows_path(out, validation, name, first), lambda: compute(validation, first)
    )
    runs = []
    for seed in cfg.seed_range if name in STOCHASTIC_BASELINES else [first]:
        payload = _cached(
            _rows_path(out, scenes[""], name, seed), lambda s=seed: compute(scenes[""], s)
        )
        runs.append(_run(name, seed, {**payload, "tuning": tuning}, on_validation, scenes, cfg.k))
    return runs


def _llm_runs(key, cfg, scenes: dict[str, Scene], out: Path) -> list[RowRun]:
    from conrec.model.curriculum import run_curriculum

    row = LLM_ROWS[key]

    def compute(scene: Scene, seed: int) -> dict:
        model_dir = cfg.models.get(key) if seed == 0 and not scene.name else None
        trained: dict = {"eval": None, "stages": {}}  # a model given: no training figures
        if not model_dir:
            row_cfg = dataclasses.replace(
                row.change(scene.base),
                seed=seed,
                stages_dir=str(out / "stages"),
                output_dir=str(out / "models" / scene.name / f"{key}-s{seed}"),
            )
            summary = run_curriculum(row_cfg, scene.data)
            model_dir = summary.final_model
            seconds = {stage: m.get("seconds") for stage, m in summary.stages.items()}
            trained = {"eval": summary.eval, "stages": seconds}
        start = time.perf_counter()
        found = llm_outputs(model_dir, scene.split, scene.table, k=cfg.k, engine=cfg.engine)
        return {
            **_outputs(*found),
            "kind": "llm",
            "model_dir": str(model_dir),
            "train": trained,
            "predict_seconds": round(time.perf_counter() - start, 1),
            "machine": machine(),  # rows merged from other machines say where they ran
        }

    first = cfg.seed_range[0]
    validation = scenes["validation"]
    console.rule(f"{key} (validation, seed {first}): {row.label}")
    on_validation = _cached(
        _rows_path(out, validation, key, first), lambda: compute(validation, first)
    )
    runs = []
    for seed in cfg.seed_range if row.all_seeds else cfg.seed_range[:1]:
        console.rule(f"{key} (seed {seed}): {row.label}")
        payload = _cached(
            _rows_path(out, scenes[""], key, seed), lambda s=seed: compute(scenes[""], s)
        )
        runs.append(_run(key, seed, payload, on_validation, scenes, cfg.k))
    return runs
