import math

import numpy as np
import pytest

from conrec.codebook.artifact import Codebook
from conrec.model.rewards import (
    make_reward,
    make_valid_sid_reward,
    negative_feedback_reward,
    prefix_hit_reward,
)

# decode(a, b, c) = CW[0][a] + CW[1][b] + CW[2][c]; level 2 is all zeros
CW = np.zeros((3, 4, 2), dtype=np.float32)
CW[0] = [[1, 0], [0, 1], [-1, 0], [0, -1]]
CW[1, 1] = [0, 1]  # decode(0, 1, 0) = (1, 1): cos 1/sqrt(2) with (1, 0)
CW[1, 2] = [0, 2]  # decode(0, 2, 0) = (1, 2): cos 1/sqrt(5) with (1, 0)


@pytest.fixture
def codebook() -> Codebook:
    return Codebook(CW)


OUT = "<a_0> <b_0> <c_0>"  # decodes to (1, 0)
S2, S5 = 1 / math.sqrt(2), 1 / math.sqrt(5)


def _all_schemes(codebook, completions, gt, pos, gamma=0.5):
    return {
        s: make_reward(codebook, s, gamma=gamma)(
            [""] * len(completions), completions, gt_sids=gt, future_pos_sids=pos
        )
        for s in "abcde"
    }


def test_schemes_high_similarity_case(codebook):
    got = _all_schemes(codebook, [OUT], gt=[[(1, 0, 0), (0, 1, 0)]], pos=[[(0, 0, 1)]])
    assert got["a"] == pytest.approx([S2])
    assert got["b"] == pytest.approx([S2])  # above the 0.6 threshold: kept
    assert got["c"] == pytest.approx([S2 - 0.5 * 1.0])  # eq. (6), positive cos = 1
    assert got["d"] == pytest.approx([S2 - 0.5 * 1.0])
    assert got["e"] == pytest.approx([0.01])  # best prefix match: one level


def test_schemes_low_similarity_case_truncation_differs(codebook):
    got = _all_schemes(codebook, [OUT], gt=[[(0, 2, 0)]], pos=[[(0, 1, 0)]])
    assert got["a"] == pytest.approx([S5])
    assert got["b"] == pytest.approx([0.0])  # a below 0.6 is zeroed
    assert got["c"] == pytest.approx([S5 - 0.5 * S2])
    assert got["d"] == pytest.approx([0.0 - 0.5 * S2])  # only the positive term survives
    assert got["a"] != got["b"]
    assert got["c"] != got["d"]


def test_hit_rewards_by_matching_levels(codebook):
    assert prefix_hit_reward((0, 0, 0), [(0, 0, 0)], 3) == 1.0
    assert prefix_hit_reward((0, 0, 0), [(0, 0, 3), (2, 0, 0)], 3) == pytest.approx(0.1)
    assert prefix_hit_reward((0, 0, 0), [(1, 0, 0)], 3) == 0.0
    # a later level matching without the earlier ones is no hit
    assert prefix_hit_reward((0, 0, 0), [(1, 0, 0), (3, 3, 0)], 3) == 0.0


def test_positive_penalty_scales_with_gamma_and_empty_sets(codebook):
    kw = {"gt_sids": [[(0, 1, 0)]], "future_pos_sids": [[(0, 0, 0)]]}
    low = negative_feedback_reward([""], [OUT], codebook=codebook, gamma=0.1, **kw)
    high = negative_feedback_reward([""], [OUT], codebook=codebook, gamma=0.9, **kw)
    assert low[0] - high[0] == pytest.approx(0.8)
    no_pos = negative_feedback_reward([""], [OUT], codebook=codebook, gt_sids=[[(0, 1, 0)]])
    assert no_pos == pytest.approx([S2])
    empty_gt = negative_feedback_reward([""], [OUT], codebook=codebook, gt_sids=[[]])
    assert empty_gt == [0.0]


def test_invalid_outputs_get_the_defined_reward(codebook):
    bad = ["no sid here", "<a_9><b_0><c_0>", "<a_0><b_0>", "<b_0><a_0><c_0>", ""]
    gt = [[(0, 0, 0)]] * len(bad)
    for scheme in "abcde":
        fn = make_reward(codebook, scheme, invalid_reward=-1.0)
        assert fn([""] * len(bad), bad, gt_sids=gt, future_pos_sids=None) == [-1.0] * len(bad)
    valid = make_valid_sid_reward(codebook)
    assert valid([""] * 3, [OUT, "<a_0><b_0><c_0>", bad[1]]) == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="scheme"):
        make_reward(codebook, "z")
