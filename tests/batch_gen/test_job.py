"""The nightly job end to end: real ml-100k histories, a real tiny model, the HF engine, a real
Redis; predictions read back through the store reader the service uses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conrec.batch_gen.config import NightlyConfig
from conrec.batch_gen.engines.base import EngineConfig
from conrec.batch_gen.job import (
    BatchJobConfig,
    BatchOutcome,
    JobProgress,
    UserPrompt,
    build_user_prompts,
)
from conrec.batch_gen.nightly import run_nightly
from conrec.codebook.artifact import load_codebook, load_item_sids
from conrec.model.data.splits import cutoffs_for, user_windows
from conrec.model.prompts import next_negative_prompt
from conrec.store.connection import connect, connect_async
from conrec.store.reader import AsyncPredictionReader
from conrec.store.runs import PredictionStore
from tests.redis_support import isolated_prefix


@pytest.fixture
def store(redis_url):
    with isolated_prefix(redis_url) as prefix:
        yield PredictionStore(connect(redis_url), prefix=prefix, pointer_cache_s=0.0)


def _config(model_dir, artifact_dir, tmp_path, run_id, **job) -> NightlyConfig:
    return NightlyConfig(
        model_dir=str(model_dir),
        codebook_dir=str(artifact_dir),
        job=BatchJobConfig(run_id=run_id, checkpoint_dir=str(tmp_path / "ckpt"), **job),
        engine="hf",
        cutoff="midpoint",
        metrics_file=str(tmp_path / "batch.prom"),
        max_users=48,
    )


def test_a_run_publishes_catalogue_sids_that_the_service_reader_sees(
    ml100k, model_dir, artifact_dir, store, tmp_path, redis_url
):
    cfg = _config(model_dir, artifact_dir, tmp_path, "night1", batch_size=16)
    summary = run_nightly(cfg, ml100k.events, EngineConfig(str(model_dir), batch_size=16), store)
    assert summary.status == "published"
    assert summary.users == 48
    assert summary.invalid_sids == 0
    assert summary.failed_users == 0
    assert summary.skipped_users > 0  # users without negatives at their midpoint

    run = store.current_run()
    assert run.run_id == "night1"
    assert run.user_count == 48
    assert run.codebook_version == load_codebook(artifact_dir).version
    catalogue = set(map(tuple, load_item_sids(artifact_dir).codes.tolist()))
    windows = user_windows(ml100k.events, cutoffs_for(ml100k.events, "midpoint"))
    users, _ = build_user_prompts(
        windows, load_item_sids(artifact_dir), "full", "skip", next_negative_prompt
    )
    predictions = store.get_many([u.user_id for u in users[:48]])
    assert all(p is not None for p in predictions)
    for p in predictions:
        assert p.codes.shape == (20, 3)
        assert {tuple(c) for c in p.codes.tolist()} <= catalogue
        assert len({tuple(c) for c in p.codes.tolist()}) == 20  # distinct top-20
    assert store.get(users[60].user_id) is None  # beyond max_users: no prediction

    # The service's own reader (asyncio) sees the same published values.
    async def read_as_the_service(user_id: str):
        client = connect_async(redis_url)
        try:
            return await AsyncPredictionReader(client, prefix=store.keys.prefix).get(user_id)
        finally:
            await client.aclose()

    served = asyncio.run(read_as_the_service(users[0].user_id))
    assert served.version == "night1"
    np.testing.assert_array_equal(served.codes, predictions[0].codes)

    prom = (tmp_path / "batch.prom").read_text()
    assert "conrec_batch_users_written_total 48.0" in prom
    assert "conrec_batch_invalid_sids_total 0.0" in prom
    assert "conrec_batch_last_success_timestamp_seconds" in prom

    again = run_nightly(cfg, ml100k.events, EngineConfig(str(model_dir)), store)
    assert again.status == "already_published"  # idempotent per run id


def test_users_policy_skips_empty_histories_and_users_without_negatives(ml100k, artifact_dir):
    table = load_item_sids(artifact_dir)
    windows = list(user_windows(ml100k.events, cutoffs_for(ml100k.events, "midpoint")))
    no_neg = sum(1 for w in windows if not w.negatives())
    kept, skipped = build_user_prompts(windows, table, "full", "skip", next_negative_prompt)
    assert skipped == no_neg
    assert len(kept) + skipped == len(windows)
    every, none_skipped = build_user_prompts(
        windows, table, "recent", "generate", next_negative_prompt
    )
    assert none_skipped == 0
    assert len(every) == len(windows)


class _BrokenEngine:
    def generate_topk(self, prompts, k, exclude=None):
        raise RuntimeError("device lost")


def test_a_run_with_too_many_failures_is_not_published(artifact_dir, store, tmp_path):
    from conrec.batch_gen.job import BatchJob, LocalExecutor

    table = load_item_sids(artifact_dir)
    cfg = BatchJobConfig(run_id="broken", checkpoint_dir=str(tmp_path))
    job = BatchJob(
        cfg,
        LocalExecutor(cfg, _BrokenEngine(), set(map(tuple, table.codes.tolist())), 3),
        store,
        codebook_version="v",
        model_version="m",
        levels=3,
    )
    summary = job.run([UserPrompt("u1", "Not interested: none. Next not interested:")])
    assert summary.status == "not_published"
    assert summary.failed_users == 1
    assert store.current_run() is None
    # The checkpoint keeps the failed batch, for the rerun to retry.
    progress = JobProgress.load(tmp_path / "broken" / "progress.json")
    assert (progress.done, progress.failed_batches) == ([], {0: 1})


def test_progress_reads_back_and_a_retried_batch_leaves_the_failed_ones(tmp_path):
    path = tmp_path / "run" / "progress.json"
    assert JobProgress.load(path) is None
    progress = JobProgress()
    for outcome in (BatchOutcome(0, written=4, unusable=1), BatchOutcome(1, failed=5),
                    BatchOutcome(2, failed=3)):  # fmt: skip
        progress.record(outcome)
    progress.save(path)
    resumed = JobProgress.load(path)
    assert resumed == progress
    assert resumed.failed_users == 1 + 5 + 3
    resumed.record(BatchOutcome(1, written=5))
    assert (resumed.done, resumed.written, resumed.failed_batches) == ([0, 1], 9, {2: 3})


def test_sigkill_mid_run_keeps_the_previous_version_and_a_rerun_resumes(
    ml100k_tables, model_dir, artifact_dir, store, tmp_path, redis_url
):
    previous = store.begin_run("previous", codebook_version="v", model_version="m")
    previous.write_batch(["196"], np.zeros((1, 20, 3), dtype=np.uint16))
    previous.publish()

    cmd = [
        sys.executable, "-m", "conrec", "batch-gen",
        "--model-dir", str(model_dir), "--codebook-dir", str(artifact_dir),
        "--data", str(ml100k_tables), "--run-id", "crashy", "--engine", "hf",
        "--batch-size", "4", "--max-users", "200", "--cutoff", "midpoint",
        "--checkpoint-dir", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "CONREC_REDIS_URL": redis_url,
        "CONREC_STORE_PREFIX": store.keys.prefix,
    }
    progress = tmp_path / "ckpt" / "crashy" / "progress.json"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.is_file() and len(json.loads(progress.read_text())["done"]) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(json.loads(progress.read_text())["done"])
    assert 3 <= done_at_kill < 50

    assert store.current_run().run_id == "previous"  # the killed run is not served
    assert store.get("196") is not None

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming run crashy after {done_at_kill} batches" in rerun.stderr
    assert store.current_run().run_id == "crashy"
    assert store.current_run().user_count == 200
    assert len(json.loads(progress.read_text())["done"]) == 50


def test_a_calibrated_run_refreshes_the_artifact_and_stores_each_users_part(
    ml100k, model_dir, artifact_dir, store, tmp_path
):
    """With a fitted calibration, the run recomputes the per-item features at its cutoff into
    the codebook's folder and stores each user's part with their prediction."""
    import shutil

    from conrec.codebook.calibration import (
        FEATURES,
        ITEM_FEATURES,
        LogisticModel,
        load_calibration,
        save_calibration,
        user_layout,
    )
    from conrec.model.calibration import user_dislike

    codebook_dir = tmp_path / "codebook"
    shutil.copytree(artifact_dir, codebook_dir)
    table = load_item_sids(codebook_dir)
    ones = LogisticModel(np.ones(len(FEATURES)), 0.0, np.zeros(6), np.ones(6))
    settings = {"prior_strength": 5.0, "user_strength": 2.0, "factors": 4, "regularization": 10.0}
    save_calibration(
        tmp_path / "fitted", codebook_version=table.codebook_version, item_ids=table.item_ids[:1],
        item_features=np.zeros((1, 2)), prefix_features=np.zeros((32, 2)),
        mf_items=np.zeros((1, 5)), full=ones,
        items_only=LogisticModel(np.ones(len(ITEM_FEATURES)), 0.0, np.zeros(2), np.ones(2)),
        meta={"fitted": "by hand", "settings": settings},
    )  # fmt: skip
    cfg = _config(model_dir, codebook_dir, tmp_path, "cal1", batch_size=16)
    cfg.calibration = str(tmp_path / "fitted")
    summary = run_nightly(cfg, ml100k.events, EngineConfig(str(model_dir), batch_size=16), store)
    assert summary.status == "published"

    refreshed = load_calibration(codebook_dir)
    assert refreshed.meta["refreshed_by_run"] == "cal1"
    assert len(refreshed.item_ids) == len(table)  # every item, from the events up to the cutoff
    np.testing.assert_array_equal(refreshed.full.weights, ones.weights)  # the fitted models
    run = store.current_run()
    assert (run.user_features, run.calibration_version) == (len(user_layout(4)), refreshed.version)
    events = ml100k.events
    windows = {w.user_id: w for w in user_windows(events, cutoffs_for(events, "midpoint"))}
    [user] = [u for u in windows if store.get(u) is not None][:1]
    stored = store.get(user).user_features
    assert stored.shape == (6,)
    window = windows[user]
    # The catalogue's share of negatives at the run's latest cutoff (a nightly run's `latest`
    # is every user's).
    seen = events[events["ts"] <= max(w.cutoff for w in windows.values())]
    share = (seen["polarity"] == "neg").mean()
    assert stored[0] == pytest.approx(user_dislike(window, share, 2.0), rel=1e-5)
