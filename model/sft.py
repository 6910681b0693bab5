"""Supervised stages (translation, item-level alignment, next-negative warm-up) with LoRA.

A plain HF `Trainer` on samples whose prompt tokens are masked out of the labels
(`conrec.model.stage_data`): the loss covers the completion tokens and EOS only. (TRL's SFTTrainer
would also work, but it re-tokenises with chat/EOS conventions that a word-level demo tokenizer does
not share; this keeps the masking explicit.)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import DataCollatorForSeq2Seq

from conrec.model import distributed
from conrec.model.stage_data import IGNORE_INDEX, tokenised_rows
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


@dataclass
class SFTStageConfig:
    max_steps: int = field(default=50, metadata={"help": "Optimizer steps of the stage."})
    batch_size: int = field(
        default=16, metadata={"help": "Samples per optimizer step, over all training processes."}
    )
    learning_rate: float = field(default=2e-3, metadata={"help": "AdamW learning rate."})
    max_length: int = field(default=256, metadata={"help": "Tokens per sample (prompt cut left)."})
    save_steps: int = field(default=25, metadata={"help": "Checkpoint every this many steps."})


def sft_collator(tokenizer) -> DataCollatorForSeq2Seq:
    """transformers' padding collator for encoded samples (input_ids, labels): right-padded
    whatever side the tokenizer pads for generation, padded labels masked like the prompt."""
    right = copy.copy(tokenizer)
    right.padding_side = "right"
    return DataCollatorForSeq2Seq(
        right, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt"
    )


def run_sft_stage(
    model,
    tokenizer,
    samples: Iterable[dict],
    stage_dir: str | Path,
    cfg: SFTStageConfig,
    lora: LoraSettings,
    seed: int = 0,
    base: StartingModel = None,
    precision: Precision = "auto",
):
    """Train a fresh LoRA adapter on `samples` ({"prompt", "completion"}); return (merged, metrics).

    `samples` may be a stream: they are tokenised once into the stage directory
    (`conrec.model.stage_data`). Resumes from the stage's newest checkpoint when one exists. Device
    follows the machine (a GPU if there is one), precision `precision` (`machine_flags`).
    """
    from transformers import Trainer, TrainingArguments

    stage_dir = Path(stage_dir)
    encoded = tokenised_rows(samples, tokenizer, cfg.max_length, stage_dir)
    if not len(encoded):
        raise ValueError(f"SFT stage {stage_dir} has no samples")
    peft_model = attach_lora(model, tokenizer, lora)
    checkpoint = resume_checkpoint(stage_dir)
    args = TrainingArguments(
        output_dir=str(stage_dir / "checkpoints"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=distributed.per_rank_batch(cfg.batch_size, "batch_size"),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        logging_steps=max(1, cfg.max_steps // 10),
        save_steps=cfg.save_steps,
        save_total_limit=1,
        seed=seed,
        report_to="none",
        dataloader_num_workers=0,
        **machine_flags(precision),
    )
    trainer = Trainer(
        model=peft_model,
        args=args,
        train_dataset=encoded,
        data_collator=sft_collator(tokenizer),
    )
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {
        "samples": len(encoded),
        "steps": trainer.state.global_step,
        "train_loss": float(result.training_loss),
        "seconds": time.perf_counter() - start,
        "precision": resolved_precision(precision),
        **launch_metrics(checkpoint),
    }
    return finish_stage(trainer, tokenizer, stage_dir, metrics, base), metrics
