"""The CoNRec curriculum: translation, alignment and warm-up SFT, then progressive GRPO.

Stages run in order, each in `<output_dir>/stages/<name>/` and resumable: a finished stage is
loaded, an unfinished one resumes from its newest checkpoint. The final merged model and its
tokenizer go to `<output_dir>/model/` (loadable by `AutoModelForCausalLM.from_pretrained` and by
vLLM), with `conrec_prompt.json`: the `next_negative_prompt` arguments the batch job must use
(`model.prompts.load_prompt_config`). `<output_dir>/summary.json` holds time per stage, GRPO
rewards, valid-SID rates and the alignment accuracy after alignment SFT and after GRPO
(forgetting rate, paper table 3); `<output_dir>/grpo.png` plots the GRPO reward and KL per step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from codebook.artifact import load_codebook, load_item_sids
from model import tasks
from model.backbone import build_tiny_model, build_tokenizer, load_backbone
from model.constrained import build_sid_trie
from model.data.sources import load_ml100k
from model.data.splits import midpoint_cutoffs, training_cutoffs, user_windows
from model.data.tables import Polarity, item_texts
from model.grpo import run_grpo_stage
from model.plots import plot_grpo
from model.prompts import prompt_vocabulary, save_prompt_config
from model.rewards import make_reward, make_valid_sid_reward
from model.scoring import alignment_accuracy, generate_sids
from model.sft import run_sft_stage
from model.stages import is_done, load_finished
from model.swing import neighbours, swing_scores
from model.train_config import CurriculumConfig

FINAL_MODEL_DIR = "model"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "grpo.png"


def run_curriculum(cfg: CurriculumConfig) -> dict:
    """Run (or resume) every stage of `cfg`; return and write the summary."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_ml100k(cfg.data_dir)
    codebook = load_codebook(cfg.codebook_dir)
    item_sids = load_item_sids(cfg.codebook_dir)
    caps = asdict(cfg.prompt)

    eval_cutoffs = midpoint_cutoffs(data.events)
    train_cutoffs = training_cutoffs(data.events, eval_cutoffs, cfg.max_per_user)
    if cfg.max_train_windows and len(train_cutoffs) > cfg.max_train_windows:
        train_cutoffs = train_cutoffs.sample(cfg.max_train_windows, random_state=0).sort_index()
    windows = list(user_windows(data.events, train_cutoffs))
    eval_windows = list(user_windows(data.events, eval_cutoffs))
    # Swing and alignment see only events up to each user's eval cutoff (no eval leakage).
    seen = data.events[data.events["ts"] <= data.events["user_id"].map(eval_cutoffs)]
    swing = neighbours(swing_scores(seen[seen["polarity"] == Polarity.NEG], cfg.swing))

    model, tokenizer = _backbone(cfg, data.items, codebook.levels, codebook.size, out)
    trie = build_sid_trie(item_sids.codes, tokenizer)
    align_all, align_rule = tasks.alignment_samples(seen, item_sids, cfg.alignment)
    align_train, align_eval = tasks.split_by_user(align_all, cfg.eval_fraction)
    align_eval = align_eval[: cfg.eval_samples]
    grpo_eval = tasks.grpo_samples(
        eval_windows, item_sids, swing, "full", cfg.reward.swing_per_item, **caps
    )[: cfg.eval_samples]
    reward_funcs = [_reward(codebook, cfg), make_valid_sid_reward(codebook)]

    sft_stages = [
        ("1_translation", cfg.translation, tasks.translation_samples(data.items, item_sids)),
        ("2_alignment", cfg.align, align_train),
        ("3_warmup", cfg.warmup, tasks.next_negative_samples(
            windows, item_sids, cfg.warmup_context, **caps)),
    ]  # fmt: skip
    summary: dict = {"alignment_rule": align_rule, "stages": {}, "eval": {}}
    evals = summary["eval"]
    for name, stage_cfg, samples in sft_stages:
        stage_dir = out / "stages" / name
        if is_done(stage_dir):
            model, metrics = load_finished(stage_dir)
        else:
            print(f"== stage {name}: {len(samples)} samples", flush=True)
            model, metrics = run_sft_stage(
                model, tokenizer, samples, stage_dir, stage_cfg, cfg.lora
            )
        summary["stages"][name] = metrics
        if name == "2_alignment":
            evals["alignment_acc_after_alignment"] = alignment_accuracy(
                model, tokenizer, align_eval
            )
    evals["alignment_acc_before_grpo"] = alignment_accuracy(model, tokenizer, align_eval)
    evals["before_grpo"] = _generation_eval(model, tokenizer, trie, grpo_eval, codebook, cfg)

    for k, stage_cfg in enumerate(cfg.grpo, start=len(sft_stages) + 1):
        name = f"{k}_grpo_{stage_cfg.context}"
        stage_dir = out / "stages" / name
        if is_done(stage_dir):
            model, metrics = load_finished(stage_dir)
        else:
            samples = tasks.grpo_samples(
                windows, item_sids, swing, stage_cfg.context, cfg.reward.swing_per_item, **caps
            )
            print(f"== stage {name}: {len(samples)} samples", flush=True)
            model, metrics = run_grpo_stage(
                model, tokenizer, samples, stage_dir, stage_cfg, cfg.lora,
                reward_funcs, [1.0, 0.0], trie,
            )  # fmt: skip
        summary["stages"][name] = metrics

    acc_aligned = evals["alignment_acc_after_alignment"]
    acc_final = alignment_accuracy(model, tokenizer, align_eval)
    last_log = summary["stages"][name]["log"][-3:]
    evals.update(
        alignment_acc_after_grpo=acc_final,
        forgetting_rate=(acc_aligned - acc_final) / acc_aligned if acc_aligned else float("nan"),
        after_grpo=_generation_eval(model, tokenizer, trie, grpo_eval, codebook, cfg),
        final_train_reward=float(np.mean([e["reward"] for e in last_log])),
        alignment_eval_samples=len(align_eval),
        reward_eval_samples=len(grpo_eval),
    )
    final = out / FINAL_MODEL_DIR
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    # The batch job must prompt exactly as the last GRPO stage did.
    save_prompt_config(
        final, context=cfg.grpo[-1].context if cfg.grpo else cfg.warmup_context, **caps
    )
    summary["final_model"] = str(final)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=float))
    plot_grpo(summary, out / PLOT_FILE)
    return summary


def _backbone(cfg: CurriculumConfig, items: pd.DataFrame, levels: int, size: int, out: Path):
    """(model, tokenizer). The demo tokenizer is saved once, so a resumed run reuses its vocab."""
    if cfg.backbone_path:
        return load_backbone(cfg.backbone_path, levels, size)
    from transformers import AutoTokenizer

    tok_dir = out / "tokenizer"
    if tok_dir.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    else:
        tokenizer = build_tokenizer(item_texts(items) + prompt_vocabulary(), levels, size)
        tokenizer.save_pretrained(tok_dir)
    return build_tiny_model(tokenizer, cfg.tiny), tokenizer


def _reward(codebook, cfg: CurriculumConfig):
    r = cfg.reward
    return make_reward(
        codebook, r.scheme, gamma=r.gamma, threshold=r.threshold, invalid_reward=r.invalid_reward
    )


def _generation_eval(model, tokenizer, trie, samples, codebook, cfg: CurriculumConfig) -> dict:
    """Greedy outputs on held-out windows: reward, valid-SID rate with and without the trie."""
    if not samples:
        return {}
    start = time.perf_counter()
    prompts = [s["prompt"] for s in samples]
    columns = {
        "gt_sids": [s["gt_sids"] for s in samples],
        "future_pos_sids": [s["future_pos_sids"] for s in samples],
    }
    reward, valid = _reward(codebook, cfg), make_valid_sid_reward(codebook)
    result = {}
    for label, constraint in (("constrained", trie), ("free", None)):
        texts = generate_sids(model, tokenizer, prompts, constraint, trie.depth + 1)
        result[label] = {
            "reward_mean": float(np.mean(reward(prompts, texts, **columns))),
            "valid_sid_rate": float(np.mean(valid(prompts, texts))),
        }
    result["seconds"] = time.perf_counter() - start
    return result
