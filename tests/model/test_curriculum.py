import dataclasses
import json
from pathlib import Path

import pytest

from conrec.model.stage_plan import plan_stages
from conrec.model.train_config import CurriculumConfig, load_config

CONFIG = Path(__file__).resolve().parents[2] / "model" / "configs" / "tiny-ml100k.yaml"


def test_committed_config_loads_with_three_progressive_stages(tmp_path):
    cfg = load_config(CONFIG, output_dir=str(tmp_path))
    assert isinstance(cfg, CurriculumConfig)
    assert cfg.output_dir == str(tmp_path)
    assert [s.context for s in cfg.grpo] == ["recent", "negatives", "full"]
    assert [s.beta for s in cfg.grpo] == sorted(s.beta for s in cfg.grpo)
    assert cfg.reward.scheme == "c"
    assert cfg.reward.ground_truth == "future7d+swing"
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text() + "\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(bad)


def test_stage_fingerprints_are_shared_up_to_the_first_difference(tmp_path):
    cfg = load_config(CONFIG, output_dir=str(tmp_path))
    full = plan_stages(cfg, "cb", "data")
    sft_only = plan_stages(dataclasses.replace(cfg, grpo=[]), "cb", "data")
    no_align = plan_stages(dataclasses.replace(cfg, use_alignment=False), "cb", "data")
    scheme_a = plan_stages(
        dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, scheme="a")), "cb", "data"
    )
    assert [s.label for s in full] == [
        "1_translation", "2_alignment", "3_warmup",
        "4_grpo_recent", "5_grpo_negatives", "6_grpo_full",
    ]  # fmt: skip
    assert [s.dirname for s in sft_only] == [s.dirname for s in full[:3]]
    assert no_align[0].dirname == full[0].dirname
    assert no_align[1].name == "warmup"
    assert no_align[1].fingerprint != full[2].fingerprint
    assert [s.dirname for s in scheme_a[:3]] == [s.dirname for s in full[:3]]
    assert scheme_a[3].fingerprint != full[3].fingerprint
    other_seed = plan_stages(dataclasses.replace(cfg, seed=1), "cb", "data")
    assert not {s.fingerprint for s in other_seed} & {s.fingerprint for s in full}
    assert plan_stages(cfg, "cb", "other data")[0].fingerprint != full[0].fingerprint


def _quick(cfg, **changes):
    few = {"max_steps": 2, "save_steps": 2}
    return dataclasses.replace(
        cfg,
        max_train_windows=300,
        eval_samples=16,
        translation=dataclasses.replace(cfg.translation, **few),
        align=dataclasses.replace(cfg.align, **few),
        warmup=dataclasses.replace(cfg.warmup, **few),
        grpo=[dataclasses.replace(s, prompts_per_step=2, **few) for s in cfg.grpo],
        **changes,
    )


def test_tiny_curriculum_end_to_end_shares_stages_and_resumes(tmp_path, artifact_dir, ml100k):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conrec.model.curriculum import run_curriculum
    from conrec.model.prompts import load_prompt_config

    base = load_config(CONFIG, codebook_dir=str(artifact_dir), output_dir=str(tmp_path / "full"))
    cfg = _quick(base, stages_dir=str(tmp_path / "stages"))
    summary = run_curriculum(cfg, ml100k)
    assert list(summary.stages) == [
        "1_translation", "2_alignment", "3_warmup",
        "4_grpo_recent", "5_grpo_negatives", "6_grpo_full",
    ]  # fmt: skip
    assert summary.alignment_rule == "fallback"
    assert summary.backbone["source"] == "tiny"
    ev = summary.eval
    assert ev["after_grpo"]["constrained"]["valid_sid_rate"] == 1.0
    assert set(ev) >= {"alignment_acc_after_alignment", "alignment_acc_final", "forgetting_rate"}
    for label in ("4_grpo_recent", "5_grpo_negatives", "6_grpo_full"):
        step = summary.stages[label]["data_step"]
        assert step["enabled"]
        assert step["checked"] == 4
        assert 0 <= step["flagged"] <= step["checked"]
    saved = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert saved["stages"]["6_grpo_full"]["steps"] == 2
    assert (tmp_path / "full" / "grpo.png").stat().st_size > 10_000  # reward and KL curves
    final = tmp_path / "full" / "model"
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    assert model.config.vocab_size >= len(tok)
    assert "<c_7>" in tok.get_vocab()
    assert load_prompt_config(final) == {
        "context": "full", "max_negatives": 10, "max_positives": 10, "recent_days": 3,
        "trending": 0, "align_to": 32,
    }  # fmt: skip
    assert "<|fill|>" in tok.get_vocab()
    assert json.loads((final / "conrec_backbone.json").read_text())["source"] == "tiny"

    # An SFT-only run over the same stages directory trains nothing new (grpo: [] is allowed).
    sft_only = dataclasses.replace(cfg, grpo=[], output_dir=str(tmp_path / "sft"))
    stages_before = sorted(p.name for p in (tmp_path / "stages").iterdir())
    sft = run_curriculum(sft_only, ml100k)
    assert sorted(p.name for p in (tmp_path / "stages").iterdir()) == stages_before
    assert list(sft.stages) == ["1_translation", "2_alignment", "3_warmup"]
    assert sft.stages["3_warmup"] == summary.stages["3_warmup"]
    assert not {"after_grpo", "final_train_reward"} & set(sft.eval)
    assert load_prompt_config(tmp_path / "sft" / "model")["context"] == "negatives"

    # A second run finds every stage done and only re-reads their figures.
    again = run_curriculum(cfg, ml100k)
    assert again.stages["4_grpo_recent"] == summary.stages["4_grpo_recent"]
    assert again.eval == summary.eval


def test_grpo_stages_draw_disjoint_windows_and_recent_keeps_recent_negatives(
    tmp_path, artifact_dir, ml100k
):
    from conrec.model.curriculum import CurriculumRun
    from conrec.model.prompts import EMPTY, NEXT_NEGATIVE

    base = load_config(CONFIG, codebook_dir=str(artifact_dir), output_dir=str(tmp_path))
    cfg = dataclasses.replace(
        base, cleaning=dataclasses.replace(base.cleaning, enabled=False),
        grpo=[dataclasses.replace(s, max_steps=50) for s in base.grpo],
    )  # fmt: skip
    run = CurriculumRun(cfg, ml100k)
    grpo = [s for s in run.stages if s.kind == "grpo"]
    drawn = [run.samples(stage, model=None)[0] for stage in grpo]
    windows = [{s["window"] for s in samples} for samples in drawn]
    assert all(len(w) == len(samples) for w, samples in zip(windows, drawn, strict=True))
    assert not windows[0] & windows[1]
    assert not windows[0] & windows[2]
    assert not windows[1] & windows[2]
    recent = drawn[0]
    assert recent
    # "Not interested: none." would mean a window without negatives in its last 3 days
    assert all(not s["prompt"].startswith(f"Not interested: {EMPTY}.") for s in recent)
    assert all(s["prompt"].endswith(NEXT_NEGATIVE) for s in recent)
    assert len(drawn[1]) == 50 * 4  # a stage draws max_steps x prompts_per_step samples


def test_data_too_thin_for_alignment_says_which_setting_to_lower(tmp_path, artifact_dir, ml100k):
    """No alignment question can be asked (no answer clears the thresholds): a clear error
    before any training, naming the settings, rather than an empty stage."""
    from conrec.model.curriculum import run_curriculum
    from conrec.model.tasks import AlignmentConfig

    base = load_config(CONFIG, codebook_dir=str(artifact_dir), output_dir=str(tmp_path))
    impossible = AlignmentConfig(min_user_occurrences=10**6, min_item_negatives=10**6)
    cfg = _quick(base, stages_dir=str(tmp_path / "stages"), alignment=impossible)
    with pytest.raises(ValueError, match=r"lower alignment\.min_item_negatives"):
        run_curriculum(cfg, ml100k)
    assert not list((tmp_path / "stages").glob("2_alignment*"))
