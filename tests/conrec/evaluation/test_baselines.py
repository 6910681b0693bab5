"""The baselines on small hand-made logs, and their tuning on a real validation split."""

import numpy as np
import pandas as pd
import pytest

from conrec.codebook.artifact import ItemSIDTable
from conrec.evaluation.baselines import (
    Catalogue,
    CategoryBlocker,
    DislikePrior,
    FactorizationBaseline,
    PopularityBaseline,
    RandomBaseline,
    SwingBaseline,
    top_sids,
)
from conrec.model.data.splits import UserWindow
from conrec.model.data.visibility import EventLog
from conrec.model.mf import MFConfig
from conrec.model.swing import SwingConfig

ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d", "e"],
        "title": "",
        "text": "",
        "category": ["horror", "horror, comedy", "comedy", "drama", "drama"],
    }
)
TABLE = ItemSIDTable(
    np.array(["a", "b", "c", "d", "e"]),
    np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 0, 0]], np.uint16),  # d, e collide
    "v",
)
CATALOGUE = Catalogue.of(TABLE, ITEMS)


def window(user, negatives=(), positives=()):
    items = [*negatives, *positives]
    return UserWindow(
        user_id=user,
        cutoff=100,
        history_items=np.array(items, dtype=str),
        history_ts=np.arange(len(items)),
        history_polarity=np.array(["neg"] * len(negatives) + ["pos"] * len(positives)),
        next_negative=None,
        future_negatives=(),
        future_positives=(),
    )


def log(rows) -> EventLog:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"])
    return EventLog.of(frame, CATALOGUE.item_ids.tolist())


END = 1_000  # after every event of these logs


VISIBLE = log(
    [("u1", "d", 1, "neg"), ("u2", "d", 1, "neg"), ("u3", "d", 1, "neg"),
     ("u1", "c", 2, "neg"), ("u2", "c", 2, "neg"), ("u1", "a", 3, "neg"), ("u1", "b", 4, "pos")]
)  # fmt: skip


def test_top_sids_skips_excluded_and_duplicate_sids():
    scores = np.array([0.1, 0.5, 0.4, 0.9, 0.8])
    assert top_sids(scores, CATALOGUE, frozenset(), k=3) == [(1, 0, 0), (0, 0, 1), (0, 1, 0)]
    assert top_sids(scores, CATALOGUE, frozenset({(1, 0, 0)}), k=2) == [(0, 0, 1), (0, 1, 0)]


def test_popularity_ranks_by_negatives_for_everyone():
    pop = PopularityBaseline(CATALOGUE)
    pop.fit(VISIBLE, END)
    np.testing.assert_array_equal(pop.scores(window("x")), [1, 0, 2, 3, 0])
    pop.fit(VISIBLE, 1)  # only the events with ts <= 1
    np.testing.assert_array_equal(pop.scores(window("x")), [0, 0, 0, 3, 0])
    recent = PopularityBaseline(CATALOGUE, window_days=1 / 86_400)  # the last second: ts 4 only
    recent.fit(VISIBLE, 3)
    np.testing.assert_array_equal(recent.scores(window("x")), [1, 0, 0, 0, 0])
    assert recent.name == "popularity_recent"


def test_dislike_prior_is_the_smoothed_share_of_negatives():
    prior = DislikePrior(CATALOGUE, strength=2.0)
    prior.fit(VISIBLE, END)
    share = 6 / 7  # six negatives among seven events
    expected = [(1 + 2 * share) / 3, (0 + 2 * share) / 3, (2 + 2 * share) / 4,
                (3 + 2 * share) / 5, share]  # fmt: skip
    np.testing.assert_allclose(prior.scores(window("x")), expected)


def test_factorization_learns_who_dislikes_what():
    # Two tastes: u0-u4 dislike a and b and like c; u5-u9 the reverse.
    rows = [(f"u{u}", i, t, "neg" if (u < 5) == (i in "ab") else "pos")
            for u in range(10) for t, i in enumerate("abc")]  # fmt: skip
    mf = FactorizationBaseline(CATALOGUE, MFConfig(factors=2, regularization=0.1, iterations=20))
    mf.fit(log(rows), END)
    first_taste = mf.scores(window("new", negatives=["a"]))  # folded in from one dislike
    second_taste = mf.scores(window("new", positives=["a"]))
    assert first_taste[1] > first_taste[2]  # dislikes b more than c
    assert second_taste[2] > second_taste[1]


def test_category_blocker_scores_disliked_categories_then_popularity():
    blocker = CategoryBlocker(CATALOGUE, "weighted")
    blocker.fit(VISIBLE, END)
    # The user disliked a (horror) and c (comedy): b is in both, a in one, c in one.
    scores = blocker.scores(window("x", negatives=["a", "c"]))
    assert scores[1] > scores[2] > scores[0] > scores[3] > scores[4]  # c beats a on popularity
    assert np.all(scores[[3, 4]] < 1)  # no disliked category: popularity only
    any_variant = CategoryBlocker(CATALOGUE, "any")
    any_variant.fit(VISIBLE, END)
    flat = any_variant.scores(window("x", negatives=["a", "c"]))
    assert np.floor(flat[[0, 1, 2]]).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="variant"):
        CategoryBlocker(CATALOGUE, "all")


def test_swing_scores_items_co_disliked_with_the_users_negatives():
    rows = [(f"u{u}", i, 1, "neg") for u in range(6) for i in ("a", "b")]
    rows += [("u0", "c", 2, "neg"), ("u9", "e", 1, "neg")]
    swing = SwingBaseline(CATALOGUE, SwingConfig(min_common_users=2, top_k=10))
    swing.fit(log(rows), END)
    scores = swing.scores(window("x", negatives=["a"]))
    assert scores.argmax() == 1  # b: disliked together with a by six users
    assert scores[1] > 100 * scores[[2, 3, 4]].max()  # the rest only carry the tie-break
    assert np.allclose(swing.scores(window("new")), swing.scores(window("new2")))


def test_random_is_seeded_per_user():
    rnd = RandomBaseline(CATALOGUE, seed=0)
    first = rnd.scores(window("u1"))
    np.testing.assert_array_equal(first, rnd.scores(window("u1")))
    assert not np.array_equal(first, rnd.scores(window("u2")))
    assert not np.array_equal(first, RandomBaseline(CATALOGUE, seed=1).scores(window("u1")))


def test_tuning_picks_the_best_validation_point(ml100k, item_sids):
    from conrec.evaluation.split import EvalSplit
    from conrec.evaluation.tuning import tune

    validation = EvalSplit.build(ml100k.events, item_sids, "validation")
    catalogue = Catalogue.of(item_sids, ml100k.items)
    choice, fhr = tune("category_blocker", validation, catalogue)
    assert set(fhr) == {"weighted", "any"}
    assert fhr[choice] == max(fhr.values())
    # The dislike prior is chosen by the decision: negatives caught at 10% positives lost.
    choice, caught = tune("dislike_prior", validation, catalogue)
    assert set(caught) == {str(s) for s in DislikePrior.STRENGTHS}
    assert caught[str(choice)] == max(caught.values()) > 0.1
