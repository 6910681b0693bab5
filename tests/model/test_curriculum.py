import dataclasses
import json
from pathlib import Path

import pytest

from model.train_config import CurriculumConfig, load_config

CONFIG = Path(__file__).resolve().parents[2] / "model" / "configs" / "tiny-ml100k.yaml"


def test_committed_config_loads_with_three_progressive_stages(tmp_path):
    cfg = load_config(CONFIG, output_dir=str(tmp_path))
    assert isinstance(cfg, CurriculumConfig)
    assert cfg.output_dir == str(tmp_path)
    assert [s.context for s in cfg.grpo] == ["recent", "negatives", "full"]
    assert [s.beta for s in cfg.grpo] == sorted(s.beta for s in cfg.grpo)
    assert cfg.reward.scheme == "c"
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text() + "\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(bad)


def test_tiny_curriculum_end_to_end_and_resume(tmp_path, artifact_dir, ml100k_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.curriculum import run_curriculum
    from model.prompts import load_prompt_config

    cfg = load_config(
        CONFIG, output_dir=str(tmp_path), codebook_dir=str(artifact_dir), data_dir=str(ml100k_dir)
    )
    few = {"max_steps": 2, "save_steps": 2}
    cfg = dataclasses.replace(
        cfg,
        max_train_windows=200,
        eval_samples=16,
        translation=dataclasses.replace(cfg.translation, **few),
        align=dataclasses.replace(cfg.align, **few),
        warmup=dataclasses.replace(cfg.warmup, **few),
        grpo=[dataclasses.replace(s, prompts_per_step=2, **few) for s in cfg.grpo],
    )
    summary = run_curriculum(cfg)
    assert list(summary["stages"]) == [
        "1_translation",
        "2_alignment",
        "3_warmup",
        "4_grpo_recent",
        "5_grpo_negatives",
        "6_grpo_full",
    ]
    assert summary["alignment_rule"] == "fallback"
    ev = summary["eval"]
    assert ev["after_grpo"]["constrained"]["valid_sid_rate"] == 1.0
    assert 0.0 <= ev["alignment_acc_after_grpo"] <= 1.0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["stages"]["6_grpo_full"]["steps"] == 2
    assert (tmp_path / "grpo.png").stat().st_size > 10_000  # reward and KL curves
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert model.config.vocab_size >= len(tok)
    assert "<c_7>" in tok.get_vocab()
    assert load_prompt_config(tmp_path / "model") == {
        "context": "full",
        "max_negatives": 10,
        "max_positives": 10,
        "recent_days": 3,
    }
    # a second run finds every stage done and only re-evaluates
    again = run_curriculum(cfg)
    assert again["stages"]["4_grpo_recent"] == summary["stages"]["4_grpo_recent"]
