"""The curriculum on two processes of this CPU (gloo), started as a user starts it: `accelerate
launch` with the shipped config and `conrec train`, and `torchrun` with a script."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from conrec.model import distributed
from conrec.model.stages import LAUNCH_FILE, resume_checkpoint
from conrec.model.train_config import CurriculumConfig, load_config
from tests.launch_support import (
    BIN,
    accelerate_train,
    finished,
    kill_tree,
    wait_while_running,
    write_config,
)
from tests.redis_support import free_port

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "model" / "configs" / "tiny-ml100k.yaml"
PROBE = Path(__file__).with_name("rank_probe.py")
SFT_STAGES = ("1_translation", "2_alignment", "3_warmup")
GRPO_STAGES = ("4_grpo_recent", "5_grpo_negatives", "6_grpo_full")


def small(cfg: CurriculumConfig, **changes) -> CurriculumConfig:
    """The committed tiny config cut to seconds per stage: translation long enough (40 steps,
    a checkpoint every 10) to be killed in the middle."""
    few = {"max_steps": 4, "save_steps": 4}
    return dataclasses.replace(
        cfg,
        max_train_windows=300,
        eval_samples=16,
        translation=dataclasses.replace(cfg.translation, max_steps=40, save_steps=10),
        align=dataclasses.replace(cfg.align, **few),
        warmup=dataclasses.replace(cfg.warmup, **few),
        grpo=[dataclasses.replace(s, prompts_per_step=2, **few) for s in cfg.grpo],
        **changes,
    )


def test_two_processes_train_every_stage_once_resume_after_sigkill_and_match_one(
    tmp_path, artifact_dir, ml100k_tables
):
    from conrec.model.curriculum import run_curriculum
    from conrec.model.data.prepared import load_tables

    base = load_config(TINY, codebook_dir=str(artifact_dir), data=str(ml100k_tables))
    two = small(base, output_dir=str(tmp_path / "two"))
    config = write_config(two, tmp_path / "two.yaml")
    stages = tmp_path / "two" / "stages"

    # SIGKILL the launcher and its workers once translation has a complete checkpoint.
    first = accelerate_train(config, tmp_path / "first.log")
    checkpoints = lambda: list(stages.glob("1_translation-*/checkpoints/*/trainer_state.json"))  # noqa: E731
    wait_while_running(checkpoints, first, tmp_path / "first.log")
    kill_tree(first)
    assert not (tmp_path / "two" / "summary.json").exists()

    log = finished(accelerate_train(config, tmp_path / "rerun.log"), tmp_path / "rerun.log")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert list(summary["stages"]) == [*SFT_STAGES, *GRPO_STAGES]
    translation = summary["stages"]["1_translation"]
    assert translation["resumed_from_step"] >= 10  # resumed, not restarted
    assert translation["steps"] == 40
    assert {s["processes"] for s in summary["stages"].values()} == {2}
    for label in GRPO_STAGES:
        step = summary["stages"][label]["data_step"]
        assert step["checked_by_rank"] == [step["checked"] // 2] * 2  # the ranks split it

    # One set of artifacts, written by one process: each stage announced once, one directory
    # per stage beside the shared tokenizer, each finished and measured once.
    for label in [*SFT_STAGES, *GRPO_STAGES]:
        assert log.count(f"== stage {label} ") == 1, label
    dirs = sorted(p.name for p in stages.iterdir())
    assert len(dirs) == 7
    assert dirs[-1].startswith("tokenizer-")
    for stage_dir in stages.glob("[0-9]_*"):
        assert (stage_dir / "merged" / "STAGE_DONE").is_file()
        assert json.loads((stage_dir / LAUNCH_FILE).read_text()) == {"processes": 2}
        assert (stage_dir / "evals.json").is_file()
    assert {p.name for p in (tmp_path / "two").iterdir()} == {
        "stages", "model", "summary.json", "grpo.png",
    }  # fmt: skip

    # The same config on one process: the same global batches, the same losses. (Translation,
    # resumed above, reports the loss of the steps after the resume only.)
    one = run_curriculum(
        dataclasses.replace(two, output_dir=str(tmp_path / "one")), load_tables(two.data)
    )
    for label in ("2_alignment", "3_warmup"):
        a, b = summary["stages"][label]["train_loss"], one.stages[label]["train_loss"]
        assert abs(a - b) <= 1e-3 * abs(b), (label, a, b)


def test_grpo_stages_deal_each_window_to_one_rank_once_per_epoch(
    tmp_path, artifact_dir, ml100k_tables
):
    base = load_config(TINY, codebook_dir=str(artifact_dir), data=str(ml100k_tables))
    cfg = small(
        base, output_dir=str(tmp_path / "out"),
        cleaning=dataclasses.replace(base.cleaning, enabled=False),
    )  # fmt: skip
    config = write_config(cfg, tmp_path / "probe.yaml")
    log = tmp_path / "probe.log"
    cmd = [
        BIN / "torchrun", "--nproc_per_node", "2", "--master_port", str(free_port()),
        PROBE, config, tmp_path,
    ]  # fmt: skip
    with log.open("w") as out:
        rc = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT).returncode
    assert rc == 0, log.read_text()[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(ranks[0]["shard"] + ranks[1]["shard"]) == list(range(10))
    assert not set(ranks[0]["shard"]) & set(ranks[1]["shard"])
    for label in GRPO_STAGES:
        drawn = ranks[0]["stages"][label]["drawn"]
        assert drawn == ranks[1]["stages"][label]["drawn"]  # every rank draws the same samples
        assert len(drawn) == 4 * 2  # max_steps x prompts_per_step: one epoch
        mine = [set(r["stages"][label]["rewarded"]) for r in ranks]
        assert mine[0]
        assert mine[1]
        assert not mine[0] & mine[1], label  # no window trained on by both ranks
        assert mine[0] | mine[1] == set(drawn), label  # and every window used


def test_a_checkpoint_resumes_only_on_the_number_of_processes_that_wrote_it(tmp_path):
    ckpt = tmp_path / "checkpoints"
    (ckpt / "checkpoint-10").mkdir(parents=True)
    (ckpt / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (ckpt / "checkpoint-20").mkdir()  # killed mid-save: no trainer_state.json
    (tmp_path / LAUNCH_FILE).write_text(json.dumps({"processes": 2}))
    with pytest.raises(ValueError, match="written by 2 training processes and this run has 1"):
        resume_checkpoint(tmp_path)
    (tmp_path / LAUNCH_FILE).write_text(json.dumps({"processes": 1}))
    assert resume_checkpoint(tmp_path) == str(ckpt / "checkpoint-10")


def test_stage_batches_are_global_and_must_split_over_the_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.per_rank_batch(16, "batch_size") == 4
    with pytest.raises(ValueError, match=r"batch_size = 18 .* multiple of 4"):
        distributed.per_rank_batch(18, "batch_size")
