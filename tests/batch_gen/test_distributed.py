"""The Ray Data scale-out in Ray's local mode gives the single-process job's predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conrec.batch_gen.config import NightlyConfig
from conrec.batch_gen.engines.base import EngineConfig
from conrec.batch_gen.job import BatchJobConfig, build_user_prompts
from conrec.batch_gen.nightly import run_nightly
from conrec.codebook.artifact import load_item_sids
from conrec.model.data.splits import cutoffs_for, user_windows
from conrec.model.prompts import next_negative_prompt
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import isolated_prefix

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_ray_workers_publish_the_same_predictions_as_one_process(
    ray_local, ml100k, model_dir, artifact_dir, tmp_path, redis_url
):
    engine = EngineConfig(str(model_dir), batch_size=6)

    def config(run_id: str, prefix: str, ray_workers: int) -> NightlyConfig:
        return NightlyConfig(
            model_dir=str(model_dir),
            codebook_dir=str(artifact_dir),
            job=BatchJobConfig(run_id=run_id, batch_size=6, checkpoint_dir=str(tmp_path)),
            engine="hf",
            cutoff="midpoint",
            redis_url=redis_url,
            store_prefix=prefix,
            max_users=24,
            metrics_file=str(tmp_path / f"{run_id}.prom"),
            ray_workers=ray_workers,
        )

    with isolated_prefix(redis_url) as ray_prefix, isolated_prefix(redis_url) as local_prefix:
        sharded = PredictionStore(connect(redis_url), prefix=ray_prefix)
        summary = run_nightly(config("ray", ray_prefix, 2), ml100k.events, engine, sharded)
        assert summary.status == "published"
        assert (summary.users, summary.failed_users, summary.invalid_sids) == (24, 0, 0)
        # The Ray path keeps the job's checkpoints and metrics.
        progress = json.loads((tmp_path / "ray" / "progress.json").read_text())
        assert sorted(progress["done"]) == [0, 1, 2, 3]
        assert "conrec_batch_users_written_total 24.0" in (tmp_path / "ray.prom").read_text()
        local = PredictionStore(connect(redis_url), prefix=local_prefix)
        run_nightly(config("local", local_prefix, 0), ml100k.events, engine, local)

        assert sharded.current_run().user_count == 24
        windows = user_windows(ml100k.events, cutoffs_for(ml100k.events, "midpoint"))
        users, _ = build_user_prompts(
            windows, load_item_sids(artifact_dir), "full", "skip", next_negative_prompt
        )
        ids = [u.user_id for u in users[:24]]
        for a, b in zip(sharded.get_many(ids), local.get_many(ids), strict=True):
            np.testing.assert_array_equal(a.codes, b.codes)
