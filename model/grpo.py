"""Progressive GRPO (paper section 3): TRL's GRPOTrainer with trie-constrained generation.

Each of the three stages (context `recent` -> `negatives` -> `full`) trains a fresh LoRA adapter
on the previous stage's merged model, so the KL reference (adapter disabled) is the previous
stage's policy, with its own beta. Per-step logs (TRL): `reward`, `reward_std`, `kl`, and
`rewards/<name>/mean` per reward function; `valid_sid_reward` has weight 0 and is the valid-SID
rate.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from conrec.model import distributed
from conrec.model.prompts import Context
from conrec.model.stages import (
    LoraSettings,
    Precision,
    StartingModel,
    attach_lora,
    finish_stage,
    launch_metrics,
    machine_flags,
    resolved_precision,
    resume_checkpoint,
)
from conrec.model.trie import SIDTrie


@dataclass
class GRPOStageConfig:
    context: Context = field(
        default="negatives", metadata={"help": "Prompt context: recent | negatives | full."}
    )
    beta: float = field(default=0.04, metadata={"help": "KL coefficient of this stage."})
    max_steps: int = field(default=10, metadata={"help": "Optimizer steps of the stage."})
    prompts_per_step: int = field(
        default=4,
        metadata={"help": "Distinct prompts per optimizer step, over all training processes."},
    )
    num_generations: int = field(default=4, metadata={"help": "Group size G per prompt."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    loss_type: str = field(
        default="grpo", metadata={"help": "TRL loss type; 'grpo' is the paper's eq. (3)."}
    )
    save_steps: int = field(default=5, metadata={"help": "Checkpoint every this many steps."})


def run_grpo_stage(
    model,
    tokenizer,
    samples: Sequence[dict],
    stage_dir: str | Path,
    cfg: GRPOStageConfig,
    lora: LoraSettings,
    reward_funcs: Sequence[Callable],
    reward_weights: Sequence[float],
    sid_trie: SIDTrie,
    seed: int = 0,
    base: StartingModel = None,
    extra_metrics: dict | None = None,
    precision: Precision = "auto",
):
    """One progressive-GRPO stage on `samples` (prompt, gt_sids, future_pos_sids).

    Returns (merged model, metrics, with `extra_metrics` added); resumes from the stage's newest
    checkpoint. Trains in `precision` (`machine_flags`).
    """
    # TRL (seconds to import) is loaded when a stage runs, not by the commands that only read
    # GRPOStageConfig to build their options.
    _load_trl()
    from datasets import Dataset
    from trl import GRPOConfig

    from conrec.model.trl_generation import ConstrainedGRPOTrainer

    if not samples:
        raise ValueError(f"GRPO stage {stage_dir} has no samples")
    stage_dir = Path(stage_dir)
    checkpoint = resume_checkpoint(stage_dir)
    # TRL repeats each prompt num_generations times in a row and deals the step's completions
    # out to the processes in consecutive slices: when the per-process batch is a multiple of
    # num_generations each prompt's group stays on one process, otherwise a group spans
    # processes and TRL gathers its rewards before computing the group's advantages.
    per_rank = distributed.per_rank_batch(
        cfg.prompts_per_step * cfg.num_generations, "prompts_per_step x num_generations"
    )
    args = GRPOConfig(
        output_dir=str(stage_dir / "checkpoints"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=per_rank,
        num_generations=cfg.num_generations,
        max_completion_length=sid_trie.depth + 1,
        temperature=cfg.temperature,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        reward_weights=list(reward_weights),
        logging_steps=1,
        save_steps=cfg.save_steps,
        save_total_limit=1,
        seed=seed,
        report_to="none",
        dataloader_num_workers=0,
        **machine_flags(precision),
    )
    # TRL's fused logprob forward reads `lm_head.bias`, which peft's trainable-token wrapper
    # (SID embedding rows, trained in the SFT stages) does not expose: GRPO trains LoRA only.
    policy = attach_lora(model, tokenizer, replace(lora, train_sid_embeddings=False))
    trainer = ConstrainedGRPOTrainer(
        model=policy,
        reward_funcs=list(reward_funcs),
        args=args,
        train_dataset=Dataset.from_list(list(samples)),
        processing_class=tokenizer,
        sid_trie=sid_trie,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {
        "samples": len(samples),
        "steps": trainer.state.global_step,
        "seconds": time.perf_counter() - start,
        "precision": resolved_precision(precision),
        **launch_metrics(checkpoint),
        "log": step_log(trainer.state.log_history, trainer.reward_func_names),
        **(extra_metrics or {}),
    }
    return finish_stage(trainer, tokenizer, stage_dir, metrics, base), metrics


def _load_trl() -> None:
    """Import TRL's trainer, and through it vLLM, on a thread of its own. vLLM keeps the error of
    an optional import it could not make (torchcodec) for the life of the process, and with its
    traceback every frame of the stack that imported it: imported from a stage, that stage's
    locals (the model, the LoRA policy, the trainer and, under a launcher, its DDP process
    group) would outlive the stage, to be torn down at interpreter exit, where gloo aborts."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(importlib.import_module, "conrec.model.trl_generation").result()


def step_log(history: Sequence[dict], reward_names: Sequence[str]) -> list[dict]:
    """Per-step reward mean/std, KL and each reward function's mean from TRL's log history."""
    keys = ["reward", "reward_std", "kl", *(f"rewards/{n}/mean" for n in reward_names)]
    return [
        {"step": entry["step"], **{k: entry[k] for k in keys if k in entry}}
        for entry in history
        if "reward" in entry
    ]
