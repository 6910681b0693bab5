import numpy as np
import pandas as pd
import pytest

from conrec.model.data.splits import (
    TRENDING_DAYS,
    TRENDING_ITEMS,
    cutoffs_for,
    global_cutoffs,
    midpoint_cutoffs,
    training_cutoffs,
    user_windows,
    validation_spec,
)
from conrec.model.data.tables import DAY_SECONDS

DAY = DAY_SECONDS


def _events():
    rows = [
        ("u", "h1", 0 * DAY, "pos"),
        ("u", "h2", 1 * DAY, "neg"),
        ("u", "h3", 2 * DAY, "neg"),  # cutoff here: history = first three events
        ("u", "f1", 3 * DAY, "pos"),
        ("u", "f2", 4 * DAY, "neg"),  # next negative
        ("u", "f3", 5 * DAY, "exposure"),
        ("u", "f4", 9 * DAY, "neg"),  # exactly cutoff + 7 days: inside the window
        ("u", "f5", 9 * DAY + 1, "neg"),  # one second later: outside
        ("w", "x", 5, "neg"),
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"]).assign(reason="")


def test_window_sides_on_a_hand_checked_user():
    events = _events()
    (window,) = user_windows(events, pd.Series({"u": 2 * DAY}))
    assert window.history_items.tolist() == ["h1", "h2", "h3"]
    assert window.negatives() == ["h2", "h3"]
    assert window.positives() == ["h1"]
    assert window.recent_negatives(days=1) == ["h2", "h3"]
    assert window.recent_negatives(days=0.5) == ["h3"]
    assert window.next_negative == "f2"
    assert window.future_negatives == ("f2", "f4")
    assert window.future_positives == ("f1",)
    assert window.future_exposures == ("f3",)


def test_until_caps_the_future_window_and_next_negative():
    frame = pd.DataFrame({"user_id": ["u"], "cutoff": [2 * DAY], "until": [3 * DAY]})
    (window,) = user_windows(_events(), frame)
    assert window.future_positives == ("f1",)
    assert window.future_negatives == ()
    assert window.next_negative is None


def test_trending_counts_everyone_s_negatives_in_the_month_up_to_the_cutoff():
    cut = TRENDING_DAYS * DAY + 1
    rows = [
        ("a", "old", 1, "neg"),  # exactly a month before the cutoff: outside
        ("a", "x", 2, "neg"),
        ("a", "y", 3, "neg"),
        ("b", "y", 4, "neg"),
        ("b", "x", 5, "pos"),  # a like is not a dismissal
        ("c", "z", cut, "neg"),  # exactly the cutoff: inside
        ("c", "late", cut + 1, "neg"),  # after the cutoff: never visible
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"]).assign(reason="")
    windows = list(user_windows(events, pd.Series({"a": cut, "b": cut, "c": 3})))
    # y twice; x and z once each, x dismissed first
    assert windows[0].trending_negatives == ("y", "x", "z")
    assert windows[1].trending_negatives == windows[0].trending_negatives
    assert windows[2].trending_negatives == ("old", "x", "y")


def test_trending_keeps_the_top_items_on_ml100k(ml100k):
    events = ml100k.events
    window = next(user_windows(events, midpoint_cutoffs(events).iloc[:1]))
    assert len(window.trending_negatives) == TRENDING_ITEMS
    ts = events["ts"]
    seen = events[(ts <= window.cutoff) & (ts > window.cutoff - TRENDING_DAYS * DAY)]
    counts = seen[seen["polarity"] == "neg"]["item_id"].value_counts()
    listed = counts[list(window.trending_negatives)].to_numpy()
    assert (listed[:-1] >= listed[1:]).all()
    assert listed[-1] >= counts.drop(list(window.trending_negatives)).max()


def test_midpoint_cutoffs_keep_the_first_half_as_history():
    cut = midpoint_cutoffs(_events())
    assert cut.to_dict() == {"u": 3 * DAY, "w": 5}


def test_no_future_event_leaks_into_history_on_ml100k(ml100k):
    events = ml100k.events
    cutoffs = midpoint_cutoffs(events)
    windows = list(user_windows(events, cutoffs))
    assert len(windows) == 943
    by_user = {user: g for user, g in events.groupby("user_id")}
    for w in windows:
        g = by_user[w.user_id]
        assert (w.history_ts <= w.cutoff).all()
        later = g[g["ts"] > w.cutoff]
        assert set(w.future_negatives) <= set(later.loc[later["polarity"] == "neg", "item_id"])
        assert len(w.history_items) + len(later) == len(g)
    # ml-100k's published figures for the per-user midpoint cutoff.
    assert sum(bool(w.future_negatives) for w in windows) == 809
    assert sum(len(w.future_negatives) >= 3 for w in windows) == 587


def test_training_windows_never_see_past_the_eval_cutoff(ml100k):
    events = ml100k.events
    eval_cut = midpoint_cutoffs(events)
    frame = training_cutoffs(events, eval_cut, max_per_user=4)
    assert len(frame) > 2000
    assert (frame.groupby("user_id").size() <= 4).all()
    assert (frame["cutoff"] < frame["until"]).all()
    assert (frame["until"] == frame["user_id"].map(eval_cut)).all()
    by_user = events.groupby("user_id")
    for w in user_windows(events, frame.sample(200, random_state=0)):
        g = by_user.get_group(w.user_id)
        visible = g[(g["ts"] > w.cutoff) & (g["ts"] <= eval_cut[w.user_id])]
        assert w.next_negative in set(visible.loc[visible["polarity"] == "neg", "item_id"])
        assert set(w.future_negatives) <= set(visible["item_id"])
        assert len(w.negatives()) >= 1


def test_global_cutoff_on_kuairand_gives_a_week_of_future(kuairand_file):
    from conrec.model.data.sources import load_kuairand

    events = load_kuairand(kuairand_file).events
    cutoff = int(pd.Timestamp("2022-04-14", tz="UTC").timestamp())
    windows = list(user_windows(events, global_cutoffs(events, cutoff)))
    assert len(windows) == 664
    assert all(np.all(w.history_ts <= cutoff) for w in windows)
    assert sum(bool(w.future_negatives) for w in windows) > 300


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("latest", {"u": 9 * DAY + 1, "w": 9 * DAY + 1}),
        ("last:2d", {"u": 7 * DAY + 1, "w": 7 * DAY + 1}),
        ("last:0.5d", {"u": 8 * DAY + DAY // 2 + 1, "w": 8 * DAY + DAY // 2 + 1}),
        ("1970-01-03", {"u": 2 * DAY, "w": 2 * DAY}),
        ("1970-01-03T01:00:00+01:00", {"u": 2 * DAY, "w": 2 * DAY}),
        (str(3 * DAY), {"u": 3 * DAY, "w": 3 * DAY}),
    ],
)
def test_cutoff_specs(spec, expected):
    events = _events().sort_values(["user_id", "ts"]).reset_index(drop=True)
    assert cutoffs_for(events, spec).to_dict() == expected


def test_midpoint_spec_and_bad_specs():
    events = _events().sort_values(["user_id", "ts"]).reset_index(drop=True)
    assert cutoffs_for(events, "midpoint").equals(midpoint_cutoffs(events))
    for bad in ("yesterday-ish", "last:-3d", "last:xd", "mid"):
        with pytest.raises(ValueError, match="is not one of: midpoint"):
            cutoffs_for(events, bad)


def test_validation_moves_absolute_cutoffs_back_one_horizon():
    assert validation_spec("midpoint") == "midpoint"
    assert validation_spec("last:3d") == "last:3d"
    assert validation_spec("2024-03-01") == validation_spec("latest") == "last:7d"
