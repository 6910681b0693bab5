from pathlib import Path

import pytest

from conrec.evaluation.rows import ABLATION, LLM_ROWS, select_rows
from conrec.model.stage_plan import plan_stages
from conrec.model.train_config import load_config

CONFIG = Path(__file__).resolve().parents[3] / "model" / "configs" / "tiny-ml100k.yaml"


def test_ablation_rows_add_one_module_each_and_share_stages():
    base = load_config(CONFIG)
    cfgs = {key: LLM_ROWS[key].change(base) for key in ABLATION}
    assert not cfgs["sft_neg"].use_alignment
    assert cfgs["sft_neg"].grpo == []
    assert cfgs["align"].use_alignment
    assert cfgs["grpo_next"].reward.ground_truth == "next"
    assert cfgs["grpo_next"].reward.scheme == "a"
    assert cfgs["grpo_future"].reward.ground_truth == "future7d+swing"
    assert (cfgs["grpo_future"].reward.scheme, cfgs["penalty"].reward.scheme) == ("a", "c")
    assert not cfgs["penalty"].cleaning.enabled
    assert cfgs["conrec"] is base  # the last row is the config as given: the product default
    plans = {key: plan_stages(cfg, "cb", "data") for key, cfg in cfgs.items()}
    # align, grpo_* and conrec all start from the same three SFT stages
    shared = [s.dirname for s in plans["conrec"][:3]]
    for key in ("align", "grpo_next", "grpo_future", "penalty"):
        assert [s.dirname for s in plans[key][:3]] == shared


def test_row_selection():
    assert select_rows("main") == ("sft_neg", "sft_negpos", "conrec")
    assert select_rows("conrec, sft_neg,conrec") == ("conrec", "sft_neg")
    assert set(select_rows("all")) == set(LLM_ROWS)
    with pytest.raises(ValueError, match="unknown rows"):
        select_rows("conrec,bert4rec")
