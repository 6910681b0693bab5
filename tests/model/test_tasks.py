import pandas as pd
import pytest

from conrec.model import tasks
from conrec.model.data.tables import Polarity
from conrec.model.sids import format_sid, parse_sid


def test_alignment_falls_back_on_ml100k_and_uses_user_positives(ml100k, item_sids):
    samples, rule = tasks.alignment_samples(ml100k.events, item_sids)
    assert rule == "fallback"  # no ml-100k user dislikes an item more than 3 times
    assert len(samples) > 500
    ev = ml100k.events
    neg_count = ev[ev.polarity == Polarity.NEG].item_id.value_counts()
    strong_sids = {item_sids.sid_of(i) for i in neg_count[neg_count > 10].index}
    for s in samples[:50]:
        answer = tuple(s["answer"])
        assert answer in strong_sids
        assert parse_sid(s["completion"], 3) == answer
        cands = [tuple(c) for c in s["candidates"]]
        assert answer in cands
        assert len(cands) == 4
        liked = ev[(ev.user_id == s["user_id"]) & (ev.polarity == Polarity.POS)].item_id
        liked_sids = {item_sids.sid_of(i) for i in liked}
        assert sum(c in liked_sids for c in cands if c != answer) == 3


def test_paper_rule_applies_when_a_user_repeats_a_negative(ml100k, item_sids):
    ev = ml100k.events
    user = ev.user_id.iloc[0]
    neg = ev[(ev.user_id == user) & (ev.polarity == Polarity.NEG)].iloc[[0]]
    repeated = pd.concat([ev, *[neg] * 4], ignore_index=True)  # 5 negatives of one item
    samples, rule = tasks.alignment_samples(repeated, item_sids)
    assert rule == "paper"
    assert {tuple(s["answer"]) for s in samples} == {item_sids.sid_of(neg.item_id.iloc[0])}


def test_grpo_samples_add_swing_neighbours(windows, item_sids):
    w = next(w for w in windows if w.future_negatives)
    first = w.future_negatives[0]
    other = next(
        i
        for i in item_sids.item_ids.tolist()
        if item_sids.sid_of(i) not in {item_sids.sid_of(x) for x in w.future_negatives}
    )
    with_swing = tasks.grpo_samples([w], item_sids, {first: [other]}, "negatives")[0]
    plain = tasks.grpo_samples([w], item_sids, {}, "negatives")[0]
    assert list(item_sids.sid_of(other)) in with_swing["gt_sids"]
    assert list(item_sids.sid_of(other)) not in plain["gt_sids"]
    assert len(with_swing["gt_sids"]) == len(plain["gt_sids"]) + 1
    assert {tuple(s) for s in plain["future_pos_sids"]} == {
        item_sids.sid_of(i) for i in w.future_positives
    }


def test_translation_and_warmup_samples(ml100k, windows, item_sids):
    trans = list(tasks.translation_samples(ml100k.items, item_sids))
    assert len(trans) == 2 * len(ml100k.items)
    assert trans[1]["completion"] == format_sid(item_sids.sid_of(ml100k.items.item_id.iloc[0]))
    warm = tasks.next_negative_samples(windows, item_sids)
    assert len(warm) == sum(w.next_negative is not None for w in windows)
    assert all(s["prompt"].endswith("Next not interested:") for s in warm)


def test_split_by_user_is_disjoint(ml100k, item_sids):
    samples, _ = tasks.alignment_samples(ml100k.events, item_sids)
    train, held = tasks.split_by_user(samples, 0.2)
    assert held
    assert len(train) + len(held) == len(samples)
    assert not {s["user_id"] for s in train} & {s["user_id"] for s in held}


def test_stage_subsets_are_disjoint_cover_everything_and_follow_the_salt(windows):
    subsets = tasks.stage_subsets(windows, 3, salt="0")
    keys = [{(w.user_id, w.cutoff) for w in subset} for subset in subsets]
    assert all(keys)
    assert not (keys[0] & keys[1])
    assert not (keys[0] & keys[2])
    assert not (keys[1] & keys[2])
    assert sum(map(len, keys)) == len({(w.user_id, w.cutoff) for w in windows})
    other = tasks.stage_subsets(windows, 3, salt="1")
    assert [len(s) for s in other] != [len(s) for s in subsets] or other[0] != subsets[0]


def test_ground_truth_switch(windows, item_sids):
    w = next(w for w in windows if w.next_negative and len(w.future_negatives) > 1)
    swing = {w.future_negatives[0]: ["neighbour"]}
    assert tasks.ground_truth_items(w, "next", swing, 3) == [w.next_negative]
    assert tasks.ground_truth_items(w, "future7d", swing, 3) == list(w.future_negatives)
    assert tasks.ground_truth_items(w, "future7d+swing", swing, 3) == [
        *w.future_negatives,
        "neighbour",
    ]
    with pytest.raises(ValueError, match="ground_truth"):
        tasks.ground_truth_items(w, "future30d", swing, 3)
    (sample,) = tasks.grpo_samples([w], item_sids, swing, "negatives", ground_truth="next")
    assert sample["gt_sids"] == [list(item_sids.sid_of(w.next_negative))]


def test_oversample_repeats_flagged_samples():
    samples = [{"i": 0}, {"i": 1}, {"i": 2}]
    out = tasks.oversample(samples, [False, True, False], factor=3)
    assert [s["i"] for s in out] == [0, 1, 1, 1, 2]


def test_alignment_answers_and_distractors_are_drawn_at_random(ml100k, item_sids):
    first, _ = tasks.alignment_samples(ml100k.events, item_sids, seed=0)
    second, _ = tasks.alignment_samples(ml100k.events, item_sids, seed=1)
    assert first == tasks.alignment_samples(ml100k.events, item_sids, seed=0)[0]  # seeded
    assert [s["answer"] for s in first] != [s["answer"] for s in second]
    # The answer sits in each position of the four about equally often.
    positions = [s["candidates"].index(s["answer"]) for s in first]
    assert all(abs(positions.count(k) / len(positions) - 0.25) < 0.06 for k in range(4))
