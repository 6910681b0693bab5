"""Candidate-Accuracy sets: the answer and its 19 nearest-in-time non-negative distractors."""

import numpy as np
import pandas as pd

from conrec.codebook.artifact import ItemSIDTable
from conrec.evaluation.candidates import candidate_sets
from conrec.model.data.splits import user_windows


def _table(n: int) -> ItemSIDTable:
    ids = np.array([f"i{k}" for k in range(n)])
    codes = np.array([[k // 100, (k // 10) % 10, k % 10] for k in range(n)], np.uint16)
    return ItemSIDTable(ids, codes, "v")


def test_distractors_are_exposures_first_then_positives_nearest_in_time():
    rows = [("u", "i0", 100, "neg"), ("u", "i1", 200, "neg")]  # cutoff after i0; next neg i1
    rows += [("u", f"i{10 + k}", 200 + 10 * (k + 1), "exposure") for k in range(5)]
    rows += [("u", f"i{20 + k}", 200 - 5 * (k + 1), "pos") for k in range(20)]
    rows += [("u", "i50", 201, "pos"), ("u", "i50", 90, "neg")]  # also disliked: never a distractor
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"])
    events = events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    cutoffs = pd.Series({"u": 100})
    sets, skipped = candidate_sets(events, list(user_windows(events, cutoffs)), _table(60))
    assert skipped == 0
    (only,) = sets
    assert only.items[0] == "i1"
    assert only.items[1:6] == tuple(f"i{10 + k}" for k in range(5))  # exposures by distance
    assert only.items[6:] == tuple(f"i{20 + k}" for k in range(14))  # then nearest positives
    assert "i50" not in only.items
    assert len(set(only.items)) == 20


def test_users_with_too_few_distractors_are_skipped_and_counted():
    rows = [("u", "i0", 100, "neg"), ("u", "i1", 200, "neg"), ("u", "i2", 300, "pos")]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"])
    sets, skipped = candidate_sets(events, list(user_windows(events, pd.Series({"u": 100}))),
                                   _table(10))  # fmt: skip
    assert sets == []
    assert skipped == 1


def test_on_ml100k_every_set_has_twenty_distinct_sids(ml100k, item_sids):
    from conrec.evaluation.split import EvalSplit

    split = EvalSplit.build(ml100k.events, item_sids)
    assert split.candidates
    for cand in split.candidates[:100]:
        sids = {item_sids.sid_of(i) for i in cand.items}
        assert len(cand.items) == 20
        assert len(sids) == 20  # distinct SIDs, even with the test codebook's collisions
