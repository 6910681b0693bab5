"""The decision metrics on hand-computed cases, and the served scoring of a user's future week."""

import numpy as np
import pytest

from conrec.codebook.artifact import Codebook, ItemSIDTable
from conrec.evaluation.cases import (
    decision_population,
    history_predictions,
    scored_cases,
    served_cases,
)
from conrec.evaluation.decision import (
    DecisionCase,
    judge,
    merge_seeds,
    paired_difference,
    rates,
    share_dropped,
    threshold_at,
    user_auc,
)
from conrec.model.data.splits import UserWindow

INF = np.inf


def case(user, neg, pos, others=()):
    return DecisionCase(user, np.array(neg, float), np.array(pos, float), np.array(others, float))


CASES = [
    case("a", [0.9, 0.5], [0.7, 0.1]),  # pairs: 0.9>0.7, 0.9>0.1, 0.5<0.7, 0.5>0.1 -> 3/4
    case("b", [0.4], [0.4, 0.2], [0.9]),  # a tie (1/2) and a win: 3/4
    case("c", [0.8], []),  # no positive: outside the AUC population
    case("d", [-INF], [-INF, -INF]),  # no prediction: every item kept, all ties -> 1/2
]


def test_within_user_auc_by_hand():
    np.testing.assert_allclose(user_auc(CASES), [0.75, 0.75, np.nan, 0.5])
    result = judge(CASES, None)
    assert result.auc == pytest.approx(2 / 3)
    assert result.auc_users == 3
    assert result.users == 4


def test_caught_and_lost_are_pooled_over_user_item_pairs():
    # negatives 0.9 0.5 0.4 0.8 -inf; positives 0.7 0.1 0.4 0.2 -inf -inf
    assert rates(CASES, 0.45) == (pytest.approx(3 / 5), pytest.approx(1 / 6))
    assert rates(CASES, 0.95) == (0.0, 0.0)
    # the mean over users of the share of all their items dropped (d keeps everything)
    assert share_dropped(CASES, 0.45) == pytest.approx(np.mean([3 / 4, 1 / 4, 1, 0]))


def test_threshold_of_a_budget_is_the_lowest_real_score_within_it():
    # positives: 0.7, 0.4, 0.2, 0.1 and two -inf. Dropping at most 1/6 (one of six): > 0.4 drops
    # only 0.7; the lowest real threshold doing so is 0.4 itself, not a value between sweep points.
    assert threshold_at(CASES, 1 / 6) == pytest.approx(0.4)
    assert threshold_at(CASES, 0.0) == pytest.approx(0.7)
    assert threshold_at(CASES, 0.5) == pytest.approx(0.1)  # 0.7, 0.4, 0.2: exactly a half
    assert threshold_at([case("x", [0.3], [-INF])], 0.1) == INF  # no real score: drop nothing


def test_validation_thresholds_are_applied_to_test_with_the_oracle_beside_them():
    validation = [case("v", [0.9, 0.8], [0.6, 0.3, 0.2, 0.1, 0.0, 0.05, 0.01, 0.02, 0.03, 0.04])]
    result = judge(CASES, validation, budgets=(0.10,))
    ten = result.budgets["10%"]
    assert ten.threshold == pytest.approx(0.3)  # validation: dropping > 0.3 loses 1 of 10
    assert (ten.caught, ten.lost) == (pytest.approx(4 / 5), pytest.approx(2 / 6))
    assert ten.oracle_threshold == pytest.approx(0.7)  # test's own choice loses 0 of 6
    assert ten.oracle_caught == pytest.approx(2 / 5)
    lo, hi = ten.caught_ci95
    assert lo <= ten.caught <= hi


def test_paired_difference_of_a_row_with_itself_is_zero_and_a_better_row_wins():
    rng = np.random.default_rng(0)
    base = [case(f"u{i}", rng.random(3), rng.random(3)) for i in range(200)]
    better = [case(c.user_id, c.negatives + 0.5, c.positives) for c in base]
    a, b = judge(base, base), judge(better, base)
    same = paired_difference(a.per_user, a.per_user)
    assert same["auc"] == 0
    assert same["auc_ci95"] == [0.0, 0.0]
    diff = paired_difference(b.per_user, a.per_user)
    assert diff["auc"] > 0
    assert diff["auc_ci95"][0] > 0
    assert diff["caught_at_10pct"] > 0
    assert diff["caught_at_10pct_ci95"][0] > 0
    merged = merge_seeds([a, b])
    assert merged.auc == pytest.approx((a.auc + b.auc) / 2)
    with pytest.raises(ValueError, match="different users"):
        paired_difference(a.per_user, judge(base[:10], None).per_user)


# One level, three codewords: e0, e1 and their diagonal (cos 0.7071 to e0).
CODEBOOK = Codebook(np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=np.float32))
TABLE = ItemSIDTable(np.array(["a", "b", "c", "d"]), np.array([[0], [1], [2], [0]], np.uint16), "v")


def window(user, history=("d",), future_neg=("a", "c"), future_pos=("b",), exposures=()):
    return UserWindow(
        user_id=user,
        cutoff=10,
        history_items=np.array(history),
        history_ts=np.arange(len(history)),
        history_polarity=np.array(["neg"] * len(history)),
        next_negative=future_neg[0] if future_neg else None,
        future_negatives=future_neg,
        future_positives=future_pos,
        future_exposures=exposures,
    )


def test_served_cases_use_the_max_cosine_and_keep_what_cannot_be_scored():
    windows = [
        window("u", future_pos=("b", "a", "new")),  # "a" is also a negative: counted once, as one
        window("no-prediction"),
        window("quiet", future_neg=(), future_pos=()),  # nothing in the next week: not judged
    ]
    assert [w.user_id for w in decision_population(windows)] == ["u", "no-prediction"]
    cases = served_cases(windows, {"u": np.array([[0]])}, CODEBOOK, TABLE)
    np.testing.assert_allclose(cases[0].negatives, [1.0, np.sqrt(0.5)], rtol=1e-6)
    np.testing.assert_allclose(cases[0].positives[:1], [0.0], atol=1e-7)
    assert np.isneginf(cases[0].positives[1])  # "new" has no SID: kept
    assert np.isneginf(cases[1].negatives).all()
    own = scored_cases(windows, {"u": np.array([0.1, 0.2, 0.3, 0.4])}, ["a", "b", "c", "d"])
    np.testing.assert_allclose(own[0].negatives, [0.1, 0.3])


def test_history_predictions_are_the_users_most_recent_negatives():
    w = window("u", history=("a", "b", "c", "new"))
    codes = history_predictions([w], TABLE, size=2)["u"]
    np.testing.assert_array_equal(codes, [[2], [1]])  # c, then b; "new" has no SID
    assert history_predictions([window("v", history=())], TABLE) == {}
