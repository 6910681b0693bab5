"""Which stages a curriculum config runs, and the fingerprint that names each one's directory.

A stage's fingerprint hashes everything that shapes it: the data, the codebook, the backbone,
the seed, the precision it trains in, its own settings and its predecessor's fingerprint. Two
configs that agree up to a stage therefore produce the same directory for it, and an evaluation
that trains many rows (SFT-only, each ablation step, several reward schemes) trains each shared
prefix once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from conrec.model.backbone import FILL_TOKEN
from conrec.model.grpo import GRPOStageConfig
from conrec.model.sft import SFTStageConfig
from conrec.model.stages import resolved_precision
from conrec.model.train_config import CurriculumConfig


@dataclass(frozen=True)
class PlannedStage:
    index: int
    name: str  # translation | alignment | warmup | grpo_<context>
    config: SFTStageConfig | GRPOStageConfig
    fingerprint: str

    @property
    def kind(self) -> str:
        return "grpo" if isinstance(self.config, GRPOStageConfig) else "sft"

    @property
    def label(self) -> str:
        """The stage's name in summaries, e.g. `4_grpo_recent`."""
        return f"{self.index}_{self.name}"

    @property
    def dirname(self) -> str:
        return f"{self.label}-{self.fingerprint[:12]}"


def base_fingerprint(cfg: CurriculumConfig, codebook_version: str, data_version: str) -> str:
    """What every stage (and the tiny backbone's tokenizer) depends on."""
    return _digest(
        {
            "data": data_version,
            "cutoff": cfg.cutoff,
            "codebook": codebook_version,
            "backbone": cfg.backbone,
            "tiny": None if cfg.backbone else asdict(cfg.tiny),
            "seed": cfg.seed,
            "lora": asdict(cfg.lora),
            "precision": resolved_precision(cfg.precision),
            # The tokenizer's added tokens beyond the SIDs: a vocabulary change reshapes the model.
            "added_tokens": [FILL_TOKEN],
        }
    )


def plan_stages(
    cfg: CurriculumConfig, codebook_version: str, data_version: str
) -> list[PlannedStage]:
    """The stages `cfg` runs, in order, each with its fingerprint."""
    fingerprint = base_fingerprint(cfg, codebook_version, data_version)
    steps: list[tuple[str, Any, dict]] = [("translation", cfg.translation, {})]
    if cfg.use_alignment:
        steps.append(
            ("alignment", cfg.align, {"rule": asdict(cfg.alignment), "held": cfg.eval_fraction})
        )
    steps.append(
        (
            "warmup",
            cfg.warmup,
            {
                "context": cfg.warmup_context,
                "prompt": asdict(cfg.prompt),
                "windows": [cfg.max_train_windows, cfg.max_per_user],
            },
        )
    )
    grpo_inputs = {
        "swing": asdict(cfg.swing),
        "reward": asdict(cfg.reward),
        "cleaning": asdict(cfg.cleaning),
        "stages": len(cfg.grpo),
    }
    steps += [(f"grpo_{s.context}", s, grpo_inputs) for s in cfg.grpo]
    out = []
    for index, (name, stage_cfg, inputs) in enumerate(steps, start=1):
        fingerprint = _digest(
            {"after": fingerprint, "name": name, "config": asdict(stage_cfg), "inputs": inputs}
        )
        out.append(PlannedStage(index, name, stage_cfg, fingerprint))
    return out


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
