"""The time-consistent protocol: a user with cutoff t is scored by models that saw every event
with ts <= t and none after it, whichever baseline, and a baseline that peeks past the cutoff or
ignores events before it fails here."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from conrec.codebook.artifact import ItemSIDTable
from conrec.evaluation.baselines import Catalogue
from conrec.evaluation.split import EvalSplit
from conrec.evaluation.tuning import GRIDS, baseline_outputs, make_baseline
from conrec.model.data.tables import DAY_SECONDS
from conrec.model.data.visibility import EventLog, lag_days, refit_schedule

ITEMS = [f"i{n}" for n in range(12)]
TABLE = ItemSIDTable(
    np.array(ITEMS), np.array([[n // 4, n % 4, 0] for n in range(12)], np.uint16), "v"
)
CATALOGUE = Catalogue.of(
    TABLE,
    pd.DataFrame({"item_id": ITEMS, "title": "", "text": "",
                  "category": [f"g{n % 3}" for n in range(12)]}),
)  # fmt: skip
DAY = DAY_SECONDS


def _events(extra=()) -> pd.DataFrame:
    """Six users, each rating the same items at their own pace, so that their midpoint cutoffs
    differ; `extra` rows are appended."""
    rows = []
    for u in range(6):
        start = u * 3 * DAY
        for n, item in enumerate(ITEMS[u : u + 8]):
            polarity = "neg" if (n + u) % 3 == 0 else "pos" if n % 2 else "exposure"
            rows.append((f"u{u}", item, start + n * DAY, polarity, ""))
    rows += list(extra)
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity", "reason"])
    return frame.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)


def _scores(baseline_name: str, events: pd.DataFrame, user: str, peeking: bool = False):
    split = EvalSplit.build(events, TABLE, buckets=100)  # one fit per user: fits at cutoffs
    baseline = make_baseline(baseline_name, CATALOGUE, GRIDS[baseline_name][0])
    if baseline_name == "sasrec":
        baseline.config = dataclasses.replace(baseline.config, epochs=2)
    if peeking:  # a broken baseline: fitted on the whole log, whatever the cutoff
        fit = baseline.fit
        baseline.fit = lambda log, until: fit(log, int(log.ts.max()))
    out = baseline_outputs(baseline, split, CATALOGUE)
    row = next(i for i, c in enumerate(out.cases) if c.user_id == user)
    case = out.cases[row]
    return split, np.concatenate([case.negatives, case.positives, case.others])


DATA_BASELINES = [name for name in GRIDS if name != "random"]


@pytest.mark.parametrize("name", DATA_BASELINES)
def test_no_baseline_sees_past_the_users_cutoff(name):
    split, before = _scores(name, _events(), "u0")
    cutoff = int(split.cutoffs["u0"])
    # Another user's dislikes one second after u0's cutoff: u0's nightly job has not seen them.
    later = [("u5", item, cutoff + 1, "neg", "") for item in ITEMS]
    _, after = _scores(name, _events(later), "u0")
    np.testing.assert_allclose(after, before)


@pytest.mark.parametrize("name", DATA_BASELINES)
def test_every_baseline_sees_other_users_events_before_the_cutoff(name):
    split, before = _scores(name, _events(), "u3")
    cutoff = int(split.cutoffs["u3"])
    # u0's dislikes, long after u0's own midpoint but before u3's cutoff: a nightly job at u3's
    # cutoff knows them (the union of histories up to each user's own cutoff would not).
    assert cutoff - 2 * DAY > int(split.cutoffs["u0"])
    earlier = [("u0", item, cutoff - 2 * DAY + n, "neg", "") for n, item in enumerate(ITEMS)]
    _, after = _scores(name, _events(earlier), "u3")
    assert not np.allclose(after, before), name


def test_a_baseline_that_peeks_fails_the_check():
    split, honest = _scores("popularity", _events(), "u0")
    cutoff = int(split.cutoffs["u0"])
    later = [("u5", item, cutoff + 1, "neg", "") for item in ITEMS]
    _, peeked = _scores("popularity", _events(later), "u0", peeking=True)
    assert not np.allclose(peeked, honest)


def test_event_log_counts_prefixes_in_time():
    events = _events()
    log = EventLog.of(events, ITEMS)
    assert (np.diff(log.ts) >= 0).all()
    t = 5 * DAY
    visible = events[events["ts"] <= t]
    neg = visible[visible["polarity"] == "neg"]["item_id"].value_counts()
    np.testing.assert_array_equal(log.counts(t), [neg.get(i, 0) for i in ITEMS])
    assert len(log.upto(t)) == len(visible)
    window = log.counts(t, since=t - 2 * DAY)
    recent = neg_between(events, t - 2 * DAY, t)
    np.testing.assert_array_equal(window, [recent.get(i, 0) for i in ITEMS])
    assert log.counts(t, None).sum() == len(visible)


def neg_between(events, since, until):
    rows = events[(events["ts"] > since) & (events["ts"] <= until)]
    return rows[rows["polarity"] == "neg"]["item_id"].value_counts()


def test_refit_schedule_never_fits_after_a_users_cutoff():
    rng = np.random.default_rng(0)
    cutoffs = pd.Series(rng.integers(0, 100 * DAY, 500), index=[f"u{i}" for i in range(500)])
    cutoffs.iloc[:50] = cutoffs.iloc[0]  # a block of users sharing one cutoff
    for buckets in (None, 1, 8, 499):
        schedule = refit_schedule(cutoffs, buckets)
        scored = [u for point in schedule for u in point.users]
        assert sorted(scored) == sorted(cutoffs.index)  # everyone once
        assert all(cutoffs[u] >= point.until for point in schedule for u in point.users)
        assert [p.until for p in schedule] == sorted({p.until for p in schedule})
        assert len(schedule) <= (len(set(cutoffs)) if buckets is None else buckets)
        lags = lag_days(cutoffs, schedule)
        assert (lags >= 0).all()
        if buckets is None:
            assert (lags == 0).all()
    # sharing a cutoff keeps users in one bucket
    together = next(p for p in refit_schedule(cutoffs, 8) if cutoffs.index[0] in p.users)
    assert set(cutoffs.index[:50]) <= set(together.users)
