import pytest

from model import prompts
from model.sids import format_sid, parse_sids


def _window_with_both(windows):
    return next(w for w in windows if len(w.negatives()) >= 2 and len(w.positives()) >= 2)


def test_next_negative_prompt_lists_history_sids_in_order(windows, item_sids, tokenizer):
    w = _window_with_both(windows)
    text = prompts.next_negative_prompt(w, item_sids, "full")
    expected_neg = [item_sids.sid_of(i) for i in w.negatives()][-20:]
    expected_pos = [item_sids.sid_of(i) for i in w.positives()][-20:]
    assert parse_sids(text, 3) == expected_neg + expected_pos
    # round trip through the tokenizer: decoding puts spaces between SID tokens
    decoded = tokenizer.decode(tokenizer(text)["input_ids"])
    assert parse_sids(decoded, 3) == expected_neg + expected_pos
    assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]


def test_contexts_grow_and_caps_hold(windows, item_sids):
    w = _window_with_both(windows)
    recent = prompts.next_negative_prompt(w, item_sids, "recent", recent_days=3)
    negs = prompts.next_negative_prompt(w, item_sids, "negatives")
    full = prompts.next_negative_prompt(w, item_sids, "full")
    assert len(parse_sids(recent, 3)) == len(w.recent_negatives(3))
    assert prompts.POSITIVES not in negs
    assert full.startswith(negs.removesuffix(f" {prompts.NEXT_NEGATIVE}"))
    capped = prompts.next_negative_prompt(w, item_sids, "full", max_negatives=1, max_positives=1)
    assert parse_sids(capped, 3) == [
        item_sids.sid_of(w.negatives()[-1]),
        item_sids.sid_of(w.positives()[-1]),
    ]
    none = prompts.next_negative_prompt(w, item_sids, "negatives", max_negatives=0)
    assert none == "Not interested: none. Next not interested:"
    with pytest.raises(ValueError, match="context"):
        prompts.next_negative_prompt(w, item_sids, "everything")


def test_translation_and_alignment_prompts_round_trip(tokenizer):
    sid = (1, 2, 3)
    text = prompts.sid_to_title_prompt(sid)
    assert parse_sids(tokenizer.decode(tokenizer(text)["input_ids"]), 3) == [sid]
    assert "toy story" in prompts.title_to_sid_prompt("toy story")
    cands = [(0, 1, 2), (3, 4, 5), (6, 7, 0), (1, 1, 1)]
    text = prompts.alignment_prompt(cands)
    assert parse_sids(text, 3) == cands
    assert format_sid(sid) == "<a_1><b_2><c_3>"


def test_prompt_config_round_trips(tmp_path, windows, item_sids):
    prompts.save_prompt_config(
        tmp_path, context="recent", max_negatives=3, max_positives=2, recent_days=2.0
    )
    kwargs = prompts.load_prompt_config(tmp_path)
    w = _window_with_both(windows)
    assert prompts.next_negative_prompt(w, item_sids, **kwargs) == prompts.next_negative_prompt(
        w, item_sids, "recent", max_negatives=3, max_positives=2, recent_days=2.0
    )
