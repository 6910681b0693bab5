"""The section-4 metrics on hand-computed cases."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from conrec.codebook.artifact import ItemSIDTable
from conrec.evaluation.list_metrics import (
    bootstrap_interval,
    candidate_hits,
    summarize,
    topk_hits,
)
from conrec.evaluation.users import EvalUser, eval_users
from conrec.model.data.splits import UserWindow
from conrec.model.data.visibility import EventLog

A, B, C, D, E = (0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 1, 1)


def user(uid, history_negatives, next_negative, future, longtail=()):
    return EvalUser(uid, history_negatives, next_negative, frozenset(future), frozenset(longtail),
                    frozenset())  # fmt: skip


USERS = [
    user("u1", 5, A, [A, B], longtail=[B]),  # next negative A, future {A, B}
    user("u2", 1, C, [C]),  # a long-tail user (< 3 history negatives)
    user("u3", 0, None, [D], longtail=[D]),  # no next negative inside the data, but a future one
    user("u4", 2, None, []),  # nothing to predict: in no population
]


def test_hits_and_populations_by_hand():
    predictions = {
        "u1": [B, E],  # hits the future set and a long-tail item, not the next negative
        "u2": [C],  # hits everything it can
        # u3 has no prediction: a miss wherever it counts
        "u4": [A],
    }
    hits = topk_hits(USERS, predictions, k=20)
    np.testing.assert_array_equal(hits["hr"], [0, 1, np.nan, np.nan])
    np.testing.assert_array_equal(hits["fhr"], [1, 1, 0, np.nan])
    np.testing.assert_array_equal(hits["luf"], [np.nan, 1, 0, np.nan])
    np.testing.assert_array_equal(hits["lif"], [1, np.nan, 0, np.nan])
    summary = summarize(hits)
    assert summary["fhr"] == {"value": pytest.approx(2 / 3), "n": 3}
    assert summary["hr"] == {"value": 0.5, "n": 2}
    assert summary["luf"] == {"value": 0.5, "n": 2}
    assert summary["lif"] == {"value": 0.5, "n": 2}


def test_only_the_first_k_predictions_count():
    hits = topk_hits(USERS[:1], {"u1": [E, D, A]}, k=2)
    assert hits["fhr"][0] == 0
    assert topk_hits(USERS[:1], {"u1": [E, D, A]}, k=3)["fhr"][0] == 1


def test_candidate_accuracy_credits_ties_fractionally():
    scores = [
        np.array([0.9, 0.1, 0.2]),  # answer best: 1
        np.array([0.1, 0.9, 0.2]),  # answer not best: 0
        np.array([0.5, 0.5, 0.1, 0.5]),  # a three-way tie at the top: 1/3
        np.full(20, 0.3),  # all tied: 1/20, the random expectation
    ]
    np.testing.assert_allclose(candidate_hits(scores), [1, 0, 1 / 3, 1 / 20])


def test_empty_population_is_nan_with_size_zero():
    summary = summarize({"fhr": np.array([np.nan, np.nan])})
    assert summary["fhr"]["n"] == 0
    assert np.isnan(summary["fhr"]["value"])


def test_bootstrap_interval_brackets_the_mean_and_pairs_users():
    rng = np.random.default_rng(0)
    values = (rng.random(500) < 0.3).astype(float)
    lo, hi = bootstrap_interval(values)
    assert lo < values.mean() < hi
    assert hi - lo < 0.1
    # A model that hits exactly where the reference hits, plus 50 more users, has a ratio > 1
    # in every resample when users are paired.
    better = values.copy()
    better[np.flatnonzero(values == 0)[:50]] = 1
    lo, hi = bootstrap_interval(better, values)
    assert 1.0 < lo <= better.mean() / values.mean() <= hi
    with_nan = np.where(rng.random(500) < 0.5, np.nan, values)
    lo, hi = bootstrap_interval(with_nan)
    assert lo < np.nanmean(with_nan) < hi


def test_luf_counts_users_with_fewer_than_three_negatives_so_far():
    users = [user(f"h{n}", n, None, [A]) for n in range(5)]
    hits = topk_hits(users, {u.user_id: [A] for u in users})
    np.testing.assert_array_equal(hits["luf"], [1, 1, 1, np.nan, np.nan])  # 0, 1, 2 in; 3 out
    np.testing.assert_array_equal(hits["fhr"], [1, 1, 1, 1, 1])


def test_lif_long_tail_counts_negatives_up_to_the_users_cutoff():
    """An item is long-tail for a user while fewer than 5 negatives on it exist at their
    cutoff: 4 is long-tail, 5 is not, and negatives after the cutoff do not count."""
    table = ItemSIDTable(np.array(["x", "y"]), np.array([[0, 0, 0], [0, 0, 1]], np.uint16), "v")
    rows = [(f"o{n}", "x", 10 + n, "neg") for n in range(4)]  # x: 4 negatives by ts 13
    rows += [(f"o{n}", "y", 10 + n, "neg") for n in range(5)]  # y: 5 negatives by ts 14
    rows += [("late", "x", 100, "neg")]  # x's fifth, after the cutoff
    log = EventLog.of(pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"]),
                      ["x", "y"])  # fmt: skip
    window = UserWindow("u", 50, np.array([], dtype=str), np.array([], dtype=int),
                        np.array([], dtype=str), "x", ("x", "y"), ())  # fmt: skip
    (judged,) = eval_users([window], table, log)
    assert judged.longtail_future_negatives == frozenset({(0, 0, 0)})  # x, not y
    (judged_late,) = eval_users([dataclasses.replace(window, cutoff=200)], table, log)
    assert judged_late.longtail_future_negatives == frozenset()  # x has 5 by then
