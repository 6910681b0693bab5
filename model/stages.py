"""What every training stage shares: a fresh LoRA adapter, checkpoints, merge, resume.

Each stage trains a new LoRA adapter on the model the previous stage left (merged), so GRPO's
reference policy (the adapter-disabled model) is the previous stage's model. A stage directory
holds `checkpoints/` (HF Trainer state, resumed after a crash), `launch.json` (how many
processes train it), `adapter/` (the LoRA adapter) and `merged/` (full model + tokenizer,
written last; its `STAGE_DONE` marks completion).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from conrec.model import distributed
from conrec.model.backbone import device
from conrec.model.sids import is_sid_token

DONE_MARKER = "STAGE_DONE"
LAUNCH_FILE = "launch.json"
# auto: bf16 on a GPU that supports it, else fp32 (see `machine_flags`).
Precision = Literal["auto", "fp32", "bf16"]
# Loads a stage's starting model whole (the previous stage's merged model, or the backbone).
StartingModel = Callable[[], Any] | None


@dataclass
class LoraSettings:
    r: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator."})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
        metadata={"help": "Linear layers that get adapters."},
    )
    train_sid_embeddings: bool = field(
        default=True,
        metadata={
            "help": "Also train the SID tokens' embedding rows (they are new to the "
            "backbone), via peft's trainable_token_indices."
        },
    )


def attach_lora(model, tokenizer, lora: LoraSettings):
    """A PeftModel with a fresh adapter; only the adapter (and the SID token rows) train.

    The SID tokens are new to a pretrained backbone, so their rows must learn: in the input
    embeddings, and in the LM head too when it is not tied to them (peft ties the two only for
    tied models, so an untied head is named explicitly).
    """
    from peft import LoraConfig, get_peft_model

    sid_ids = sorted(idx for tok, idx in tokenizer.get_vocab().items() if is_sid_token(tok))
    token_rows: list[int] | dict[str, list[int]] | None = None
    if lora.train_sid_embeddings:
        tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
        token_rows = sid_ids if tied else {"embed_tokens": sid_ids, "lm_head": sid_ids}
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        trainable_token_indices=token_rows,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def machine_flags(precision: Precision = "auto") -> dict[str, bool]:
    """Trainer flags for this machine: bf16 autocast where `precision` resolves to it (see
    `resolved_precision`), pinned memory only where there is a GPU to copy to, and CPU
    processes declared as such (so that several of them, under a launcher, train data-parallel
    over gloo, as `conrec.model.distributed` does)."""
    import torch

    gpu = torch.cuda.is_available()
    return {
        "bf16": resolved_precision(precision) == "bf16",
        "dataloader_pin_memory": gpu,
        "use_cpu": not gpu,
    }


def resolved_precision(precision: Precision) -> Literal["fp32", "bf16"]:
    """`auto` is bf16 on a GPU that has it and fp32 on a CPU. A CPU runs bf16 only when asked (to
    train as a GPU does): even with AMX it trains SmolLM2's stages no faster than fp32
    (tests/benchmarks/test_train_precision.py), and without bf16 instructions it is emulated."""
    import torch

    if precision != "auto":
        return precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def resume_checkpoint(stage_dir: Path) -> str | None:
    """The newest Trainer checkpoint of an unfinished stage, if any.

    A checkpoint holds each process's data order and random state, so it resumes only on the
    number of processes that wrote it (`launch.json`); on another number it is refused rather
    than resumed into a different run.
    """
    ckpt_dir = stage_dir / "checkpoints"
    last = _newest_complete(ckpt_dir)
    launch = stage_dir / LAUNCH_FILE
    processes = distributed.world_size()
    if last and launch.is_file():
        wrote = json.loads(launch.read_text())["processes"]
        if wrote != processes:
            raise ValueError(
                f"{last} was written by {wrote} training processes and this run has {processes}: "
                f"rerun with {wrote} processes to resume, or delete {ckpt_dir} to restart the stage"
            )
    distributed.barrier()  # every rank has read launch.json before the leader rewrites it
    if distributed.is_leader():
        stage_dir.mkdir(parents=True, exist_ok=True)
        launch.write_text(json.dumps({"processes": processes}))
    return last


def _newest_complete(ckpt_dir: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing (its trainer_state.json is written
    after the weights and optimizer): a process killed mid-save leaves a partial folder that
    must not be resumed from."""
    steps = [
        int(p.name.rsplit("-", 1)[1])
        for p in ckpt_dir.glob("checkpoint-*")
        if p.name.rsplit("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return str(ckpt_dir / f"checkpoint-{max(steps)}") if steps else None


def launch_metrics(checkpoint: str | None) -> dict[str, int]:
    """What a stage's record says of how it ran: its processes and the step it resumed from."""
    step = int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0
    return {"processes": distributed.world_size(), "resumed_from_step": step}


def is_done(stage_dir: Path) -> bool:
    return (stage_dir / "merged" / DONE_MARKER).is_file()


def finish_stage(trainer, tokenizer, stage_dir: Path, metrics: dict, base: StartingModel = None):
    """Save the adapter, merge it, save the merged model + tokenizer; return the merged model.

    The trainer writes the adapter (rank 0 alone; gathered from every rank first when FSDP or
    ZeRO-3 sharded the model). Every rank then merges it, since the next stage trains on the
    result: into the trained model itself, or, when that model is sharded, into a whole copy of
    the stage's starting model (`base`). The leader alone writes the merged model.
    """
    adapter = stage_dir / "adapter"
    trainer.save_model(str(adapter))
    distributed.barrier()
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        from peft import PeftModel

        if base is None:
            raise ValueError(f"{stage_dir}: a sharded stage needs its starting model to merge into")
        merged = PeftModel.from_pretrained(base(), adapter).merge_and_unload()
    else:
        merged = trainer.model.merge_and_unload()
    if distributed.is_leader():
        out = stage_dir / "merged"
        merged.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / DONE_MARKER).write_text(json.dumps(metrics, indent=2))
    distributed.barrier()
    return merged


def load_finished(stage_dir: Path):
    """(model, metrics) of a completed stage."""
    from transformers import AutoModelForCausalLM

    out = stage_dir / "merged"
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).to(device())
    return model, json.loads((out / DONE_MARKER).read_text())
