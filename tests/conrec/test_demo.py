"""`conrec demo` in miniature: every stage for real on the first 150 users of ml-100k with the
tiny backbone, and a served threshold chosen from data that keeps its budget on users it never
saw."""

import dataclasses
import json
from pathlib import Path

import yaml

from conrec.demo import calibration_user, run_demo
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
