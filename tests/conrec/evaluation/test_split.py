"""The evaluated split on real ml-100k: the populations, and a validation cut that never sees
the reported future."""

from conrec.evaluation.split import EvalSplit


def test_test_split_populations_on_ml100k(ml100k, item_sids):
    split = EvalSplit.build(ml100k.events, item_sids, "test")
    pops = split.populations()
    assert pops["users"] == 943
    assert pops["fhr"] == 809  # users with a negative in the 7 days after their midpoint
    assert pops["hr"] == 836
    assert pops["luf"] < pops["fhr"]
    assert pops["cand_acc"] + pops["cand_acc_skipped"] == pops["hr"]
    # A user's history ends at their cutoff; the log holds every event, in time order.
    assert all((w.history_ts <= w.cutoff).all() for w in split.windows)
    assert len(split.log.events) == len(ml100k.events)
    assert (split.log.upto(int(split.cutoffs.min()))["ts"] <= split.cutoffs.min()).all()
    # LIF's long tail is counted up to each user's cutoff: 495 users have a future negative
    # on an item with fewer than five negatives by then.
    assert pops["lif"] == 495


def test_validation_split_ends_before_every_test_cutoff(ml100k, item_sids):
    test = EvalSplit.build(ml100k.events, item_sids, "test")
    validation = EvalSplit.build(ml100k.events, item_sids, "validation")
    assert (validation.cutoffs <= test.cutoffs.loc[validation.cutoffs.index]).all()
    by_user = {w.user_id: w for w in test.windows}
    for w in validation.windows:
        test_history = set(by_user[w.user_id].history_items.tolist())
        # everything the validation split judges lies in the test split's history
        assert set(w.future_negatives) <= test_history
        assert set(w.future_positives) <= test_history
    assert validation.populations()["fhr"] > 100
