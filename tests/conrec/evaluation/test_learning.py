"""A model that learns nothing must fail: trained vs untrained tiny backbone on FHR@20.

Translation + next-negative SFT, 80 steps each, the whole ml-100k test population, the test
suite's codebook. FHR@20 per seed (0, 1, 2, 3), untrained -> trained, measured on a 2-core
Intel Xeon (AVX-512) VM: 0.155 -> 0.171, 0.166 -> 0.199, 0.098 -> 0.185, 0.099 -> 0.172
(gaps 0.016, 0.033, 0.088, 0.073; mean 0.053). When the test was written, on a 2-core AMD EPYC
VM, the gaps were 0.058, 0.082, 0.031 and 0.060. One seed's gap moves with the machine's float
kernels (seed 0: 0.058 there, 0.016 here), so the test averages the paired gap over the four
seeds and asks for 0.025. A model whose training changes nothing scores its untrained value
again on every seed: its mean gap is 0, within float noise.
"""

import dataclasses
from pathlib import Path

from codebook.artifact import load_item_sids
from conrec.evaluation.llm import LLMPredictor
from model.evaluation.metrics import summarize, topk_hits
from model.evaluation.split import EvalSplit
from model.train_config import load_config

CONFIG = Path(__file__).resolve().parents[3] / "model" / "configs" / "tiny-ml100k.yaml"
MARGIN = 0.025
SEEDS = (0, 1, 2, 3)


def _fhr(tmp_path, ml100k, artifact_dir, split, seed: int, steps: int, lr: float) -> float:
    from model.curriculum import run_curriculum

    base = load_config(CONFIG, codebook_dir=str(artifact_dir))
    cfg = dataclasses.replace(
        base, seed=seed, use_alignment=False, grpo=[],
        output_dir=str(tmp_path / f"seed{seed}-lr{lr}"),
        translation=dataclasses.replace(base.translation, max_steps=steps, learning_rate=lr),
        warmup=dataclasses.replace(base.warmup, max_steps=steps, learning_rate=lr),
    )  # fmt: skip
    model_dir = run_curriculum(cfg, ml100k)["final_model"]
    predictor = LLMPredictor(model_dir, load_item_sids(artifact_dir))
    predictions = predictor.topk(predictor.prompts(split))
    return summarize(topk_hits(split.users, predictions))["fhr"]["value"]


def test_trained_model_beats_the_same_model_untrained(tmp_path, ml100k, artifact_dir):
    split = EvalSplit.build(ml100k.events, load_item_sids(artifact_dir))
    gaps = []
    for seed in SEEDS:
        # A learning rate of zero leaves the backbone exactly as initialised.
        untrained = _fhr(tmp_path, ml100k, artifact_dir, split, seed, steps=1, lr=0.0)
        trained = _fhr(tmp_path, ml100k, artifact_dir, split, seed, steps=80, lr=0.003)
        gaps.append(trained - untrained)
    assert sum(gaps) / len(gaps) >= MARGIN, gaps
