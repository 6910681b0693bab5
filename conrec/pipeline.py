"""`conrec pipeline run FILE`: the steps a scheduler runs, their artifacts in one run folder.

A pipeline file names its steps and their settings; every step writes into ``<run_dir>/<step>``
and records what it was run from in ``<run_dir>/<step>.json``. A step whose inputs (its
settings, its source files, the records of the steps it reads) are those of its record is
skipped, so a weekly retrain and a nightly batch are two short files::

    # weekly.yaml                          # nightly.yaml
    run_dir: runs/weekly                   run_dir: runs/nightly
    steps: [prepare, codebook, train,      steps: [prepare, batch]
            evaluate]                      artifacts_from: runs/weekly   # codebook and model
    prepare: {source: movielens.yaml}      prepare: {source: movielens.yaml}
    train: {config: model/configs/...}     batch: {engine: hf, cutoff: latest}
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console

from conrec.model.yaml_config import from_dict, load_yaml

console = Console()

STEPS = ("prepare", "codebook", "train", "evaluate", "batch")
# What each step reads from the steps before it.
NEEDS = {
    "prepare": (),
    "codebook": ("prepare",),
    "train": ("prepare", "codebook"),
    "evaluate": ("prepare", "codebook", "train"),
    "batch": ("prepare", "codebook", "train"),
}
TRAINED_MODEL = "model"  # the curriculum's final model, inside the train step's folder


@dataclass
class PipelineConfig:
    run_dir: str = field(
        metadata={"help": "Every step's artifacts go in <run_dir>/<step>.", "path": True}
    )
    steps: list[str] = field(metadata={"help": f"Steps to run, in the order of {STEPS}."})
    artifacts_from: str | None = field(
        default=None,
        metadata={
            "help": "Another run folder whose step outputs stand in for steps not run.",
            "path": True,
        },
    )
    prepare: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "source: dataset YAML, or dataset: ml-100k|kuairand (+ data_path)."},
    )
    codebook: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "conrec.codebook_training.CodebookTraining's settings (item_vectors, "
            "rqvae: {levels, codebook_size}, training: {epochs}); publish_to: the versioned "
            "root the service reads, to publish the new codebook into."
        },
    )
    train: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "config: curriculum YAML; cutoff: override."}
    )
    evaluate: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "seeds, rows, baselines, split, engine."}
    )
    batch: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "batch_gen's NightlyConfig and BatchJobConfig settings side by side (engine, "
            "cutoff, k, batch_size, redis_url, redis_cluster, store_prefix, max_users, ...)."
        },
    )

    def __post_init__(self) -> None:
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"unknown steps {unknown}; steps are {list(STEPS)}")
        self.steps = [s for s in STEPS if s in self.steps]


def load_pipeline(path: str | Path) -> PipelineConfig:
    """A pipeline YAML; relative paths in it (run_dir, sources, configs) are from its folder."""
    cfg = load_yaml(PipelineConfig, path)
    # The steps' own settings are free-form mappings: their paths are resolved here.
    for step, key in (("prepare", "source"), ("prepare", "data_path"), ("train", "config")):
        settings = getattr(cfg, step)
        if settings.get(key):
            settings[key] = str(_from(Path(path).parent, settings[key]))
    return cfg


@dataclass
class StepResult:
    step: str
    status: str  # ran | skipped
    seconds: float
    fingerprint: str


class Pipeline:
    """Runs the configured steps in order, skipping those whose inputs have not changed."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self._planned: dict[str, str] = {}  # fingerprints of this run's steps so far

    def output(self, step: str) -> Path:
        """Where `step`'s artifacts are: this run's folder, or artifacts_from's for a step that
        this file does not run."""
        if step in self.cfg.steps or not self.cfg.artifacts_from:
            return self.run_dir / step
        return Path(self.cfg.artifacts_from) / step

    def record(self, step: str) -> dict[str, Any] | None:
        path = self.output(step).with_suffix(".json")
        return json.loads(path.read_text()) if path.is_file() else None

    def fingerprint(self, step: str) -> str:
        """A hash of the step's settings, its source files and the records it reads."""
        upstream = {}
        for need in NEEDS[step]:
            if need in self._planned:
                upstream[need] = self._planned[need]
            elif (rec := self.record(need)) is not None:
                upstream[need] = rec["fingerprint"]
            else:
                raise ValueError(
                    f"step {step} needs the {need} step's output: add {need} to steps or point "
                    f"artifacts_from at a run that has {self.output(need)}"
                )
        settings = getattr(self.cfg, step)
        payload = {"step": step, "settings": settings, "upstream": upstream}
        payload["files"] = [_file_stamp(p) for p in self._source_files(step, settings)]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def run(self, force: tuple[str, ...] = (), dry_run: bool = False) -> list[StepResult]:
        self._planned = {}
        results = []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for step in self.cfg.steps:
            fingerprint = self.fingerprint(step)
            self._planned[step] = fingerprint
            rec = self.record(step)
            fresh = rec is not None and rec["fingerprint"] == fingerprint
            if (fresh and step not in force) or dry_run:
                status = "skipped" if fresh and step not in force else "would run"
                console.rule(f"[bold]{step}: {status}")
                results.append(StepResult(step, status, 0.0, fingerprint))
                continue
            console.rule(f"[bold]{step}")
            start = time.perf_counter()
            details = STEP_RUNNERS[step](self, getattr(self.cfg, step))
            seconds = round(time.perf_counter() - start, 1)
            record = {
                "fingerprint": fingerprint,
                "seconds": seconds,
                "details": details,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            # The record is written last: a step that crashed is run again next time.
            self.output(step).with_suffix(".json").write_text(json.dumps(record, indent=2))
            results.append(StepResult(step, "ran", seconds, fingerprint))
        return results

    def _source_files(self, step: str, settings: dict[str, Any]) -> list[Path]:
        if step == "train" and settings.get("config"):
            return [Path(settings["config"])]
        if step == "evaluate":
            return [Path(self.cfg.train["config"])] if self.cfg.train.get("config") else []
        if step != "prepare":
            return []
        if settings.get("source"):
            from conrec.model.data.mapping import load_mapping

            mapping = load_mapping(settings["source"])
            files = [settings["source"], mapping.events, mapping.items]
            return [Path(f) for f in files if f]
        return [Path(settings["data_path"])] if settings.get("data_path") else []


def _prepare(p: Pipeline, settings: dict[str, Any]) -> dict[str, Any]:
    from conrec.model.data.mapping import load_mapping, mapping_from
    from conrec.model.data.prepared import prepare_mapped, write_tables
    from conrec.model.data.sources import load_dataset

    opts = dict(settings)
    out = p.output("prepare")
    if source := opts.pop("source", None):
        report = prepare_mapped(load_mapping(source, **opts), out)
    elif "events" in opts:
        report = prepare_mapped(mapping_from(opts), out)
    else:
        ds = load_dataset(opts.get("dataset", "ml-100k"), opts.get("data_path"))
        write_tables(ds, out)
        report = ds.report
    console.print(report.summary())
    return {"rows_read": report.rows_read, "rows_kept": report.rows_kept}


def _codebook(p: Pipeline, settings: dict[str, Any]) -> dict[str, Any]:
    from conrec.codebook.versions import publish
    from conrec.codebook_training import CodebookTraining, train_codebook

    opts = dict(settings)
    served = opts.pop("publish_to", None)
    cfg = from_dict(CodebookTraining, opts, where="pipeline: codebook")
    metrics = train_codebook(p.output("codebook"), data=p.output("prepare"), cfg=cfg)
    if served:
        # The service follows the served root's pointer; the previous version stays loaded
        # there for the predictions still made with it.
        publish(p.output("codebook"), served)
    return {"codebook_version": metrics["codebook_version"], "published_to": served}


def _curriculum(p: Pipeline):
    from conrec.model.train_config import load_config

    settings = dict(p.cfg.train)
    config = settings.pop("config", None)
    if config is None:
        raise ValueError("the train step needs config: <curriculum YAML>")
    return config, load_config(
        config,
        output_dir=str(p.output("train")),
        codebook_dir=str(p.output("codebook")),
        data=str(p.output("prepare")),
        **settings,
    )


def _train(p: Pipeline, _: dict[str, Any]) -> dict[str, Any]:
    from conrec.model.curriculum import run_curriculum

    summary = run_curriculum(_curriculum(p)[1])
    return {"final_model": summary.final_model, "eval": summary.eval}


def _evaluate(p: Pipeline, settings: dict[str, Any]) -> dict[str, Any]:
    from conrec.evaluation.run import EvaluationConfig, run_evaluation

    config, curriculum = _curriculum(p)
    opts = {"seeds": 1, "rows": "conrec", **settings}
    if isinstance(opts.get("baselines"), str):
        opts["baselines"] = tuple(b.strip() for b in opts["baselines"].split(",") if b.strip())
    given = {
        **opts,
        "config": config,
        "out": str(p.output("evaluate")),
        "data": curriculum.data,
        "codebook_dir": curriculum.codebook_dir,
        "models": {"conrec": str(p.output("train") / TRAINED_MODEL)},
    }
    results = run_evaluation(from_dict(EvaluationConfig, given, where="pipeline: evaluate"))
    # The thresholds to serve, chosen on the validation split: deploy them with the run.
    return {
        "results": str(p.output("evaluate") / "results.md"),
        "thresholds": results.thresholds_file,
    }


def _batch(p: Pipeline, settings: dict[str, Any]) -> dict[str, Any]:
    from conrec.batch_gen.config import NightlyConfig
    from conrec.batch_gen.engines.base import EngineConfig
    from conrec.batch_gen.job import BatchJobConfig, utc_run_id
    from conrec.batch_gen.nightly import run_nightly
    from conrec.model.data.prepared import load_tables

    # The step's settings are NightlyConfig's and its job's (BatchJobConfig's) side by side.
    opts = dict(settings)
    job_keys = {f.name for f in fields(BatchJobConfig)}
    job = {key: opts.pop(key) for key in list(opts) if key in job_keys}
    job["run_id"] = job.get("run_id") or utc_run_id()
    job["checkpoint_dir"] = str(p.output("batch"))
    given = {
        **opts,
        "model_dir": str(p.output("train") / TRAINED_MODEL),
        "codebook_dir": str(p.output("codebook")),
        "metrics_file": str(p.output("batch") / "metrics.prom"),
        "job": job,
    }
    cfg = from_dict(NightlyConfig, given, where="pipeline: batch")
    events = load_tables(p.output("prepare")).events
    engine = EngineConfig(model_path=cfg.model_dir, batch_size=cfg.job.batch_size)
    summary = run_nightly(cfg, events, engine)
    console.print(summary.line())
    if summary.status == "not_published":
        raise RuntimeError(f"the batch run was not published: {summary.line()}")
    return {"run_id": cfg.job.run_id, "status": summary.status, "summary": summary.line()}


STEP_RUNNERS: dict[str, Callable[[Pipeline, dict[str, Any]], dict[str, Any]]] = {
    "prepare": _prepare,
    "codebook": _codebook,
    "train": _train,
    "evaluate": _evaluate,
    "batch": _batch,
}


def _from(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def _file_stamp(path: Path) -> list[Any]:
    # Size and modification time: a changed log is noticed without hashing gigabytes.
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]
