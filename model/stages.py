"""What every training stage shares: a fresh LoRA adapter, checkpoints, merge, resume.

Each stage trains a new LoRA adapter on the model the previous stage left (merged), so GRPO's
reference policy (the adapter-disabled model) is the previous stage's model. A stage directory
holds `checkpoints/` (HF Trainer state, resumed after a crash), `adapter/` (the LoRA adapter)
and `merged/` (full model + tokenizer, written last; its `STAGE_DONE` marks completion).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from model.backbone import device
from model.sids import is_sid_token

DONE_MARKER = "STAGE_DONE"


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


def precision() -> dict[str, bool]:
    """Trainer flags for this machine: bf16 on a GPU that has it (else fp32), pinned memory
    only where there is a GPU to copy to."""
    import torch

    gpu = torch.cuda.is_available()
    return {"bf16": bool(gpu and torch.cuda.is_bf16_supported()), "dataloader_pin_memory": gpu}


def resume_checkpoint(stage_dir: Path) -> str | None:
    """The newest Trainer checkpoint of an unfinished stage, if any."""
    ckpt_dir = stage_dir / "checkpoints"
    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


def is_done(stage_dir: Path) -> bool:
    return (stage_dir / "merged" / DONE_MARKER).is_file()


def finish_stage(peft_model, tokenizer, stage_dir: Path, metrics: dict):
    """Save the adapter, merge it, save the merged model + tokenizer; return the merged model."""
    peft_model.save_pretrained(stage_dir / "adapter")
    merged = peft_model.merge_and_unload()
    out = stage_dir / "merged"
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / DONE_MARKER).write_text(json.dumps(metrics, indent=2))
    return merged


def load_finished(stage_dir: Path):
    """(model, metrics) of a completed stage."""
    from transformers import AutoModelForCausalLM

    out = stage_dir / "merged"
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).to(device())
    return model, json.loads((out / DONE_MARKER).read_text())
