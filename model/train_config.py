"""The curriculum's YAML config: one dataclass tree, each field documented in its metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conrec.model.backbone import TinyBackboneConfig
from conrec.model.data.splits import CUTOFF_HELP, TRENDING_ITEMS
from conrec.model.grpo import GRPOStageConfig
from conrec.model.sft import SFTStageConfig
from conrec.model.stages import LoraSettings, Precision
from conrec.model.swing import SwingConfig
from conrec.model.tasks import AlignmentConfig
from conrec.model.yaml_config import load_yaml


@dataclass
class PromptSettings:
    """How next-negative prompts are built (`conrec.model.prompts.next_negative_prompter`); saved
    beside the model so that the nightly job builds them the same way."""

    max_negatives: int = field(default=20, metadata={"help": "Negatives kept in a prompt."})
    max_positives: int = field(default=20, metadata={"help": "Positives kept in a prompt."})
    recent_days: float = field(default=3.0, metadata={"help": "Window of the `recent` context."})
    trending: int = field(
        default=0,
        metadata={
            "help": "Open every next-negative prompt with this many of the items everyone "
            "dismissed most in the 30 days up to the cutoff (0: none).",
            "min": 0,
            "max": TRENDING_ITEMS,
        },
    )
    align_to: int = field(
        default=32,
        metadata={
            "help": "Next-negative prompts start with fill tokens up to a multiple of this many "
            "tokens, so vLLM's prefix cache (whole KV blocks; 32 on CPU) holds all of a prompt "
            "and each beam computes only its SID tokens; 0: no fill."
        },
    )


@dataclass
class RewardSettings:
    scheme: str = field(default="c", metadata={"help": "Paper table 4 scheme a-e (c = eq. 6)."})
    gamma: float = field(default=0.5, metadata={"help": "Weight of the future-positive penalty."})
    threshold: float = field(default=0.6, metadata={"help": "Truncation of schemes b and d."})
    invalid_reward: float = field(default=-1.0, metadata={"help": "Reward of a non-SID output."})
    swing_per_item: int = field(
        default=3, metadata={"help": "Swing neighbours added per future negative."}
    )
    ground_truth: str = field(
        default="future7d+swing",
        metadata={"help": "Reward ground truth: next | future7d | future7d+swing."},
    )


@dataclass
class CleaningSettings:
    """The paper's between-stage data step: a sample whose output under the previous stage's
    model is too close to one of its future positives is oversampled in the next stage."""

    enabled: bool = field(default=True, metadata={"help": "Run the between-stage data step."})
    tau: float = field(
        default=0.98,
        metadata={
            "help": "Max cosine to a future positive that flags a sample. Cosines of decoded "
            "SIDs run high (on ml-100k the median to a user's future positives is ~0.94), so "
            "0.98 flags about the closest quarter."
        },
    )
    factor: int = field(default=2, metadata={"help": "Copies of a flagged sample."})


@dataclass
class CurriculumConfig:
    output_dir: str = field(metadata={"help": "Where the final model and summary go."})
    codebook_dir: str = field(metadata={"help": "Codebook artifact (codebook + item SIDs)."})
    data: str | None = field(
        default=None,
        metadata={"help": "Prepared-tables folder (`conrec data prepare`); None: ml-100k's."},
    )
    cutoff: str = field(
        default="midpoint",
        metadata={"help": f"Evaluation cutoff; training windows end before it. {CUTOFF_HELP}"},
    )
    backbone: str | None = field(
        default=None,
        metadata={
            "help": "HF folder, .gguf file or pypi:<wheel> (model.pretrained); None builds the "
            "tiny test model."
        },
    )
    stages_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where stages are kept, by fingerprint, so runs that share a prefix of "
            "stages share them; default <output_dir>/stages."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, data and sampling."})
    precision: Precision = field(
        default="auto",
        metadata={
            "help": "Training precision: auto (bf16 on a GPU that supports it, else fp32), fp32, "
            "or bf16 (autocast on any device, so that a CPU trains as a GPU does)."
        },
    )
    tiny: TinyBackboneConfig = field(default_factory=TinyBackboneConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    swing: SwingConfig = field(default_factory=SwingConfig)
    reward: RewardSettings = field(default_factory=RewardSettings)
    cleaning: CleaningSettings = field(default_factory=CleaningSettings)
    use_alignment: bool = field(
        default=True, metadata={"help": "Run the item-level alignment SFT stage."}
    )
    max_train_windows: int = field(
        default=0, metadata={"help": "Cap on training windows (0 = all)."}
    )
    max_per_user: int = field(default=8, metadata={"help": "Training cutoffs per user."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of alignment users held out for accuracy."}
    )
    eval_samples: int = field(default=100, metadata={"help": "Alignment samples scored."})
    translation: SFTStageConfig = field(default_factory=SFTStageConfig)
    align: SFTStageConfig = field(default_factory=SFTStageConfig)
    warmup: SFTStageConfig = field(default_factory=SFTStageConfig)
    warmup_context: str = field(default="negatives", metadata={"help": "Warm-up SFT context."})
    grpo: list[GRPOStageConfig] = field(
        default_factory=lambda: [
            GRPOStageConfig(context="recent", beta=0.04),
            GRPOStageConfig(context="negatives", beta=0.04),
            GRPOStageConfig(context="full", beta=0.08),
        ]
    )


def load_config(path: str | Path, **overrides: Any) -> CurriculumConfig:
    """A curriculum YAML file (``conrec.model.yaml_config``), with ``overrides`` (not None) on
    top."""
    return load_yaml(CurriculumConfig, path, **overrides)
