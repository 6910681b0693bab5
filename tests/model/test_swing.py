import itertools
import math

import numpy as np
import pandas as pd
import pytest

from conrec.model.swing import SwingConfig, cap_graph, neighbours, swing_scores


def _graph(seed: int = 0, users: int = 30, items: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for it in rng.choice(items, size=rng.integers(3, 8), replace=False):
            rows.append((f"u{u}", f"i{it}", int(rng.integers(0, 1000))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def _brute_force(edges: pd.DataFrame, cfg: SwingConfig) -> dict[tuple[str, str], float]:
    """Eq. (5) term by term, straight from its definition."""
    users_of = edges.groupby("item_id")["user_id"].apply(set).to_dict()
    items_of = edges.groupby("user_id")["item_id"].apply(set).to_dict()
    out = {}
    for i, j in itertools.permutations(users_of, 2):
        common = users_of[i] & users_of[j]
        if len(common) <= cfg.min_common_users:
            continue
        total = 0.0
        for u, v in itertools.permutations(common, 2):
            w = ((len(items_of[u]) + cfg.alpha1) * (len(items_of[v]) + cfg.alpha1)) ** -cfg.theta
            total += w / (len(items_of[u] & items_of[v]) + cfg.alpha2)
        out[(i, j)] = total / math.sqrt(len(users_of[j]))
    return out


def test_numpy_swing_matches_equation_5():
    cfg = SwingConfig(min_common_users=2, top_k=100)
    graph = _graph()
    expected = _brute_force(cap_graph(graph, cfg), cfg)
    got = swing_scores(graph, cfg)
    assert len(got) == sum(v > 0 for v in expected.values()) > 0
    for row in got.itertuples():
        assert row.score == pytest.approx(expected[(row.item_i, row.item_j)], rel=1e-9)


def test_threshold_and_caps_remove_pairs():
    graph = _graph()
    loose = swing_scores(graph, SwingConfig(min_common_users=0, top_k=100))
    strict = swing_scores(graph, SwingConfig(min_common_users=4, top_k=100))
    assert len(strict) < len(loose)
    capped = cap_graph(graph, SwingConfig(max_items_per_user=2, max_users_per_item=5))
    assert capped.groupby("user_id").size().max() <= 2
    assert capped.groupby("item_id").size().max() <= 5
    # the per-user cap keeps each user's most recent negatives
    latest = graph.sort_values("ts").groupby("user_id").tail(1)
    kept = set(zip(capped.user_id, capped.item_id, strict=True))
    by_user_cap = cap_graph(graph, SwingConfig(max_items_per_user=1, max_users_per_item=10**6))
    assert set(zip(by_user_cap.user_id, by_user_cap.item_id, strict=True)) == set(
        zip(latest.user_id, latest.item_id, strict=True)
    )
    assert kept


def test_top_k_and_neighbours_order():
    scores = swing_scores(_graph(), SwingConfig(min_common_users=1, top_k=3))
    assert scores.groupby("item_i").size().max() == 3
    nb = neighbours(scores)
    for item, group in scores.groupby("item_i"):
        best = group.sort_values("score", ascending=False)["item_j"].iloc[0]
        assert nb[item][0] == best
        assert item not in nb[item]


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::FutureWarning")  # pyspark on pandas 3
def test_spark_swing_equals_numpy(spark):
    from conrec.model.swing_spark import swing_scores_pandas

    graph = _graph(seed=1)
    for cfg in (
        SwingConfig(min_common_users=2, top_k=100),
        SwingConfig(min_common_users=1, top_k=3, max_items_per_user=5, max_users_per_item=12),
    ):
        want = swing_scores(graph, cfg).sort_values(["item_i", "item_j"]).reset_index(drop=True)
        got = swing_scores_pandas(spark, graph, cfg)
        got = got.sort_values(["item_i", "item_j"]).reset_index(drop=True)
        assert len(want) > 0
        assert got[["item_i", "item_j"]].equals(want[["item_i", "item_j"]])
        np.testing.assert_allclose(got["score"], want["score"], rtol=1e-9)
