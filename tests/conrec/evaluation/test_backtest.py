"""`conrec backtest` in miniature: three weekly cutoffs on real ml-100k, the baselines and the
tiny LLM refitted on the events before each cutoff, every output written, a rerun resumed."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conrec.evaluation.backtest import (
    BacktestConfig,
    active_users,
    backtest_cutoffs,
    run_backtest,
)
from conrec.model.data.tables import DAY_SECONDS

CONFIG = Path(__file__).resolve().parents[3] / "model" / "configs" / "tiny-ml100k.yaml"


def test_cutoffs_are_weekly_and_leave_a_week_to_judge(ml100k):
    events = ml100k.events
    cutoffs = backtest_cutoffs(events, 26, 7)
    assert len(cutoffs) == 26
    assert set(pd.Series(cutoffs).diff().dropna()) == {7 * DAY_SECONDS}
    assert cutoffs[-1] == events["ts"].max() - 7 * DAY_SECONDS
    users = active_users(events, cutoffs[10])
    week = events[(events["ts"] > cutoffs[10]) & (events["ts"] <= cutoffs[10] + 7 * DAY_SECONDS)]
    assert set(users.index) <= set(week["user_id"])
    assert set(users.index) <= set(events.loc[events["ts"] <= cutoffs[10], "user_id"])
    # ml-100k users rate in bursts: about 30 users a week, ~870 user-weeks over 26 weeks.
    total = sum(len(active_users(events, t)) for t in cutoffs)
    assert 700 < total < 1000


def test_miniature_backtest_refits_every_row_and_resumes(tmp_path, ml100k, artifact_dir):
    raw = yaml.safe_load(CONFIG.read_text())
    for stage in ("translation", "align", "warmup"):
        raw[stage].update(max_steps=2, save_steps=2)
    for stage in raw["grpo"]:
        stage.update(max_steps=2, save_steps=2, prompts_per_step=2)
    raw.update(codebook_dir=str(artifact_dir), max_train_windows=100, eval_samples=8)
    config = tmp_path / "quick.yaml"
    config.write_text(yaml.safe_dump(raw))
    cfg = BacktestConfig(
        config=str(config), out=str(tmp_path / "out"), cutoffs=3, refit_every=2,
        baselines=("popularity", "dislike_prior"),
    )  # fmt: skip
    results = run_backtest(cfg, ml100k)
    assert len(results["cutoffs"]) == 3
    models = sorted(p.name for p in (tmp_path / "out" / "models").iterdir())
    assert len(models) == 2  # trained at the first and the third cutoff
    rows = results["rows"]
    assert set(rows) == {"popularity", "dislike_prior", "history_set", "conrec",
                         "calibrated", "calibrated_history", "calibrated_pooled"}  # fmt: skip
    assert set(rows["dislike_prior"]) == {"list", "max_cosine", "own"}
    assert "list" not in rows["history_set"]
    # The calibrated score: each week's model fitted on the week before.
    assert set(rows["calibrated"]) == {"calibrated"}
    assert 0.5 < rows["calibrated_history"]["calibrated"]["auc"] < 1
    for row in rows.values():
        for kind in ("max_cosine", "own", "calibrated"):
            if kind in row:
                assert len(row[kind]["weeks"]) == 2  # the first week only calibrates
                assert 0 <= row[kind]["budgets"]["10%"]["caught"] <= 1
    assert 0 <= rows["conrec"]["list"]["fhr"] <= 1
    # Each calibrated row against every other row, paired on the same user-weeks.
    served = results["paired"]["calibrated P(dislike), CoNRec's predictions as the set"]
    versus = served["dislike_prior, own score"]
    mine, theirs = rows["calibrated"]["calibrated"], rows["dislike_prior"]["own"]
    assert versus["auc"] == pytest.approx(mine["auc"] - theirs["auc"])
    assert versus["auc_ci95"][0] <= versus["auc"] <= versus["auc_ci95"][1]
    assert versus["caught_at_10pct"] == pytest.approx(
        mine["budgets"]["10%"]["caught"] - theirs["budgets"]["10%"]["caught"]
    )
    assert "calibrated P(dislike), CoNRec's predictions as the set" not in served
    # Both baselines by their own score and their top-20, CoNRec, the history set, the other two.
    assert len(served) == 8
    text = (tmp_path / "out" / "backtest.md").read_text()
    assert "Paired differences (user-week bootstrap, 95%)" in text
    assert "3 global cutoffs every 7 days" in text
    assert "retrained every 2 cutoffs" in text
    assert (tmp_path / "out" / "backtest.png").stat().st_size > 10_000

    before = {p: p.stat().st_mtime for p in (tmp_path / "out" / "rows").rglob("*.json")}
    again = run_backtest(cfg, ml100k)
    assert {p: p.stat().st_mtime for p in before} == before
    assert json.loads(json.dumps(again["rows"], default=float)) == json.loads(
        json.dumps(results["rows"], default=float)
    )
