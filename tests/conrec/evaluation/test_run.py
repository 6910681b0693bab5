"""`conrec evaluate` end to end in miniature: real ml-100k users, the tiny backbone, every
output written, and a rerun that reuses every cached row."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conrec.cli.main import app
from conrec.evaluation.results import EvaluationResults
from conrec.model.data.sources import DataTables

CONFIG = Path(__file__).resolve().parents[3] / "model" / "configs" / "tiny-ml100k.yaml"


@pytest.fixture(scope="module")
def small(ml100k) -> DataTables:
    """The first 150 users of ml-100k: every part runs for real, in a couple of minutes."""
    users = sorted(ml100k.events["user_id"].unique())[:150]
    events = ml100k.events[ml100k.events["user_id"].isin(users)].reset_index(drop=True)
    return dataclasses.replace(ml100k, events=events)


@pytest.fixture(scope="module")
def quick_config(tmp_path_factory, artifact_dir) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    few = {"max_steps": 2, "save_steps": 2}
    for stage in ("translation", "align", "warmup"):
        raw[stage].update(few)
    for stage in raw["grpo"]:
        stage.update(few, prompts_per_step=2)
    raw.update(codebook_dir=str(artifact_dir), max_train_windows=200, eval_samples=8)
    path = tmp_path_factory.mktemp("config") / "quick.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_miniature_evaluation_writes_every_table_and_resumes(tmp_path, quick_config, small):
    from conrec.evaluation.run import EvaluationConfig, run_evaluation

    cfg = EvaluationConfig(
        config=str(quick_config), out=str(tmp_path), seeds=2, rows="conrec,sft_neg,align",
        baselines=("random", "popularity", "category_blocker", "swing"),
    )  # fmt: skip
    results = run_evaluation(cfg, small)
    rows = results.rows
    assert set(rows) == {"random", "popularity", "category_blocker", "swing", "conrec",
                         "sft_neg", "align"}  # fmt: skip
    assert rows["conrec"]["seeds"] == [0, 1]
    assert rows["sft_neg"]["seeds"] == [0, 1]
    assert rows["align"]["seeds"] == [0]  # ablation rows run one seed
    assert rows["random"]["seeds"] == [0, 1]  # stochastic baseline
    assert rows["popularity"]["seeds"] == [0]
    pops = results.populations
    assert pops["users"] == 150
    assert 0 < pops["luf"] < pops["fhr"] <= pops["users"]
    for row in rows.values():
        for metric in row["metrics"].values():
            assert 0.0 <= metric["mean"] <= 1.0
    assert rows["popularity"]["metrics"]["fhr"]["std"] == 0.0
    assert rows["category_blocker"]["info"][0]["choice"] in ("weighted", "any")
    head = results.headline
    assert head["best_baseline"] in ("random", "popularity", "category_blocker", "swing",
                                     "sft_neg")  # fmt: skip
    lo, hi = head["fhr_ratio_ci95"]
    assert lo <= head["fhr_ratio"] <= hi
    assert results.forgetting[0]["row"] == "align"
    assert results.sweep["users"] <= pops["users"]

    # The decision: every list row through the served max cosine, the baselines by their own
    # score too, and the user's own negatives as the set; thresholds from the validation split.
    assert results.protocol == "time-consistent"
    decision = results.decision
    assert {"conrec", "popularity", "popularity:own", "history_set"} <= set(decision["rows"])
    assert decision["served"] == "conrec"
    assert decision["references"] == ["popularity:own", "category_blocker:own", "history_set"]
    served = decision["rows"]["conrec"]
    assert served["seeds"] == 2
    assert served["users"] == results.sweep["users"]  # both judge the users with a future
    for row in decision["rows"].values():
        assert row["auc_ci95"][0] <= row["auc"] <= row["auc_ci95"][1] or row["seeds"] > 1
        ten = row["budgets"]["10%"]
        assert 0 <= ten["caught"] <= 1
        assert 0 <= ten["share_dropped"] <= 1
    for reference, diff in decision["paired"].items():
        assert diff["auc"] == pytest.approx(served["auc"] - decision["rows"][reference]["auc"])
    # The thresholds file serves the calibrated score's 5% threshold chosen on the validation
    # split, and the calibration artifact it needs sits beside it.
    from conrec.codebook.calibration import load_calibration
    from conrec.service.core.thresholds import parse_thresholds

    shipped = parse_thresholds(Path(results.thresholds_file).read_bytes())
    calibrated = decision["rows"]["calibrated"]
    assert shipped.score == "calibrated"
    assert shipped.default == pytest.approx(calibrated["budgets"]["5%"]["threshold"], abs=1e-6)
    assert load_calibration(tmp_path).meta["fitted"].startswith("`conrec evaluate`")
    # The fit's ablation: the same pairs as one pooled regression, paired with the served fit.
    assert "calibrated_pooled" in decision["rows"]
    assert "calibrated_pooled" in decision["calibrated_paired"]

    text = (tmp_path / "results.md").read_text()
    for heading in ("Comparison", "Ablation", "Reward schemes", "Forgetting", "Threshold sweep",
                    "The decision a ranking service receives", "Paired differences"):  # fmt: skip
        assert heading in text
    for line in ("protocol: time-consistent", "conrec_tiny_fhr20: ", "filter_auc_max_cosine: ",
                 "filter_caught_at_10pct_lost_best_reference: ",
                 "filter_positives_lost_at_10pct_calibrated: "):  # fmt: skip
        assert line in text
    assert text.rstrip().endswith("seeds: 2")
    for png in ("metrics.png", "filter_report.png", "decision.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    # align and conrec seed 0 share their three SFT stages; sft_neg shares translation; the
    # validation split's rows (seed 0) train on its own data
    stages = sorted(p.name.split("-")[0] for p in (tmp_path / "stages").iterdir()
                    if not p.name.startswith("tokenizer"))  # fmt: skip
    assert stages.count("1_translation") == 3  # one per seed, one on validation
    assert stages.count("3_warmup") == 3

    # A rerun computes nothing again: every row comes from its cache.
    before = {p.name: p.stat().st_mtime for p in (tmp_path / "rows").iterdir()}
    again = run_evaluation(cfg, small)
    assert {p.name: p.stat().st_mtime for p in (tmp_path / "rows").iterdir()} == before
    assert again.rows["conrec"]["metrics"] == rows["conrec"]["metrics"]
    assert EvaluationResults.read(tmp_path / "results.json").headline == again.headline

    # A seed run elsewhere (another process or machine) makes the same cached row.
    elsewhere = tmp_path / "elsewhere"
    spread = dataclasses.replace(
        cfg, out=str(elsewhere), seeds=1, first_seed=1, rows="conrec", baselines=("random",)
    )
    assert run_evaluation(spread, small).rows["conrec"]["seeds"] == [1]
    assert sorted(p.name for p in (elsewhere / "rows").glob("*-s*.json")) == [
        "conrec-s1.json", "random-s1.json",
    ]  # fmt: skip
    for name in ("conrec-s1.json", "random-s1.json"):
        ours, theirs = (json.loads((d / "rows" / name).read_text()) for d in (tmp_path, elsewhere))
        assert theirs["predictions"] == ours["predictions"]


def test_cli_rejects_unknown_rows_and_baselines_before_any_work(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--rows", "bert4rec", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown rows" in result.output
    result = runner.invoke(app, ["evaluate", "--baselines", "caser", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown baselines" in result.output
    result = runner.invoke(app, ["evaluate", "--split", "train", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert not list(tmp_path.iterdir())
