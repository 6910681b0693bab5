"""`conrec batch-gen --redis-cluster` end to end: a run written across a real 3-node Redis
Cluster and published."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from conrec.cli.main import app
from conrec.store.runs import PredictionStore
from tests.redis_support import keys_per_node


def test_batch_gen_publishes_a_run_into_the_cluster(
    ml100k_tables: Path, model_dir: Path, artifact_dir: Path, tmp_path: Path,
    cluster_store: PredictionStore, redis_cluster_url: str,
) -> None:  # fmt: skip
    args = [
        "batch-gen", "--model-dir", str(model_dir), "--codebook-dir", str(artifact_dir),
        "--data", str(ml100k_tables), "--run-id", "night1", "--engine", "hf", "--batch-size", "8",
        "--max-users", "24", "--cutoff", "midpoint", "--checkpoint-dir", str(tmp_path / "ckpt"),
        "--redis-url", redis_cluster_url, "--redis-cluster",
        "--store-prefix", cluster_store.keys.prefix,
    ]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"CONREC_REDIS_URL": None})
    assert result.exit_code == 0, result.output
    run = cluster_store.current_run()
    assert (run.run_id, run.user_count) == ("night1", 24)
    spread = keys_per_node(cluster_store.client, f"{cluster_store.keys.user_prefix('night1')}*")
    assert sum(spread.values()) == 24
    assert sum(1 for n in spread.values() if n) >= 2
