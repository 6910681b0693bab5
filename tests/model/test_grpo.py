import subprocess
import sys

import pytest

from conrec.model import tasks
from conrec.model.grpo import GRPOStageConfig, run_grpo_stage, step_log
from conrec.model.rewards import make_reward, make_valid_sid_reward
from conrec.model.stages import LoraSettings, is_done
from tests.model.conftest import changed_parameters, snapshot


# The last case trains under bf16 autocast, as SmolLM2's config asks on a CPU.
@pytest.mark.parametrize(
    ("context", "beta", "precision"),
    [("recent", 0.0, "auto"), ("negatives", 0.04, "auto"), ("full", 0.1, "bf16")],
)
def test_grpo_stage_trains_lora_with_constrained_rollouts(
    context, beta, precision, tmp_path, tiny_model, tokenizer, item_sids, codebook, windows, trie
):
    samples = tasks.grpo_samples(windows, item_sids, {}, context)[:8]
    assert len(samples) == 8
    cfg = GRPOStageConfig(
        context=context, beta=beta, max_steps=2, prompts_per_step=2, num_generations=4, save_steps=2
    )
    before = snapshot(tiny_model)
    merged, metrics = run_grpo_stage(
        tiny_model,
        tokenizer,
        samples,
        tmp_path,
        cfg,
        LoraSettings(r=4, alpha=8),
        [make_reward(codebook, "c"), make_valid_sid_reward(codebook)],
        [1.0, 0.0],
        trie,
        precision=precision,
    )
    assert metrics["steps"] == 2
    assert metrics["precision"] == ("fp32" if precision == "auto" else precision)
    changed = changed_parameters(before, merged)
    assert any("proj" in k for k in changed)
    assert "model.embed_tokens.weight" not in changed  # GRPO trains LoRA only
    log = metrics["log"]
    assert [e["step"] for e in log] == [1, 2]
    for entry in log:
        assert entry["rewards/valid_sid_reward/mean"] == 1.0  # the trie admits only SIDs
        assert -1.5 <= entry["reward"] <= 1.0
        assert "reward_std" in entry
        assert ("kl" in entry) == (beta > 0)
    assert is_done(tmp_path)


def test_step_log_keeps_reward_and_kl_entries():
    history = [
        {
            "loss": 1.0,
            "reward": 0.5,
            "reward_std": 0.1,
            "kl": 0.01,
            "step": 1,
            "rewards/r/mean": 0.5,
        },
        {"train_runtime": 3.0, "step": 1},
    ]
    assert step_log(history, ["r"]) == [
        {"step": 1, "reward": 0.5, "reward_std": 0.1, "kl": 0.01, "rewards/r/mean": 0.5}
    ]


STAGE_LOCALS_PROBE = """
import gc, sys, weakref
from conrec.model.grpo import _load_trl

class StageLocal:  # stands for a stage's model, policy and trainer
    pass

def stage():
    held = StageLocal()
    _load_trl()
    return weakref.ref(held)

ref = stage()
gc.collect()
assert "vllm" in sys.modules, "the probe must import vLLM for the first time"
sys.exit(0 if ref() is None else 1)
"""


def test_loading_trl_keeps_no_local_of_the_stage_alive():
    """vLLM (imported by TRL) keeps a traceback of its failed optional imports, and so the stack
    that imported it: a stage's locals must not be on that stack (in a fresh interpreter, where
    the import happens for the first time)."""
    done = subprocess.run(
        [sys.executable, "-c", STAGE_LOCALS_PROBE], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
