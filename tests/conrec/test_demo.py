"""`conrec demo` in miniature: every stage for real on the first 150 users of ml-100k with the
tiny backbone, and a served threshold chosen from data that keeps its budget on users it never
saw."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from conrec.demo import (
    HISTORY_ROW,
    MODEL_ROW,
    BaselineComparison,
    calibration_user,
    run_demo,
    training_effect,
)
from conrec.service.core.thresholds import parse_thresholds

CONFIG = Path(__file__).resolve().parents[2] / "model" / "configs" / "tiny-ml100k.yaml"


def test_miniature_demo_serves_a_threshold_chosen_from_data(tmp_path, ml100k):
    users = sorted(ml100k.events["user_id"].unique())[:150]
    events = ml100k.events[ml100k.events["user_id"].isin(users)].reset_index(drop=True)
    small = dataclasses.replace(ml100k, events=events)
    raw = yaml.safe_load(CONFIG.read_text())
    for stage in ("translation", "align", "warmup"):
        raw[stage].update(max_steps=2, save_steps=2)
    for stage in raw["grpo"]:
        stage.update(max_steps=1, save_steps=1, prompts_per_step=2)
    raw.update(max_train_windows=100, eval_samples=8)
    config = tmp_path / "quick.yaml"
    config.write_text(yaml.safe_dump(raw))

    summary = run_demo(tmp_path / "demo", engine="hf", config=config, dataset=small)

    # The thresholds file the service served: the report's 5% threshold on the calibration half.
    served = parse_thresholds(summary.report.thresholds_file.read_bytes())
    assert served.mode == "enforce"
    assert served.default == summary.report.served.threshold
    assert summary.report.served.lost <= 0.05
    assert 0 < summary.report.users < 150
    assert {calibration_user(u) for u in users} == {True, False}
    # Over HTTP, on the half that chose nothing: a loss near the budget, not most positives.
    held_out = summary.filter["held-out half"]
    assert held_out.fail_open_users == 0
    assert held_out.future_positives_lost <= 0.15
    assert summary.filter["every user"].users > held_out.users
    assert summary.batch.status == "published"
    rows = summary.metrics.rows
    assert {"CoNRec (this run)", "popularity", "dislike_prior (own score)"} <= set(rows)
    assert all(0 <= row["auc"] <= 1 for row in rows.values())
    for name in ("summary.json", "report/filter_report.png", "codebook/training.png",
                 "batch/metrics.prom"):  # fmt: skip
        assert (tmp_path / "demo" / name).is_file(), name
    written = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert written["report"]["thresholds_file"] == str(summary.report.thresholds_file)
    assert written["metrics"]["best_baseline"] == summary.metrics.best_baseline
    # What the run shows, in words: GRPO's effect, then the decision's verdict.
    assert written["findings"] == summary.findings
    assert summary.findings[0].startswith("GRPO: held-out reward")
    assert f"{rows[MODEL_ROW]['auc']:.3f} vs {rows[HISTORY_ROW]['auc']:.3f}" in summary.findings[1]


def comparison(model_auc: float, history_auc: float, prior_auc: float) -> BaselineComparison:
    aucs = {MODEL_ROW: model_auc, HISTORY_ROW: history_auc, "dislike_prior (own score)": prior_auc}
    return BaselineComparison({n: {"auc": a} for n, a in aucs.items()}, {}, "popularity", 1.0)


@pytest.mark.parametrize(
    ("model_auc", "how"),
    [(0.60, "better than"), (0.556, "about as well as"), (0.528, "worse than")],
)
def test_the_verdict_reads_the_decision_table(model_auc: float, how: str) -> None:
    verdict = comparison(model_auc, 0.555, 0.704).verdict()
    assert f"likes {how} their own last 20 dislikes" in verdict
    assert f"(within-user AUC {model_auc:.3f} vs 0.555)" in verdict
    assert verdict.endswith("the best scorer here is dislike_prior (own score) (0.704).")


def test_training_effect_says_when_grpo_moved_nothing() -> None:
    def headline(before: float, after: float, accuracy: tuple[float, float]) -> dict:
        return {
            "before_grpo": {"constrained": {"reward_mean": before}},
            "after_grpo": {"constrained": {"reward_mean": after}},
            "alignment_acc_before_grpo": accuracy[0],
            "alignment_acc_final": accuracy[1],
        }

    still = training_effect(headline(0.4559, 0.4559, (0.3, 0.3)))
    assert still.startswith("GRPO: held-out reward 0.4559 -> 0.4559, alignment accuracy 0.30")
    assert "unchanged, so this short run cannot show what GRPO adds" in still
    moved = training_effect(headline(0.40, 0.46, (0.3, 0.3)))
    assert moved == "GRPO: held-out reward 0.4000 -> 0.4600, alignment accuracy 0.30 -> 0.30."
    assert "not measured" in training_effect({"alignment_acc_before_grpo": 0.3})
