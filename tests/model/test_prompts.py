import pytest

from conrec.model import prompts
from conrec.model.backbone import FILL_TOKEN, align_prompt, encode_prompt
from conrec.model.sids import format_sid, parse_sids


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


@pytest.mark.parametrize("block", [8, 32])
def test_next_negative_prompts_fill_to_whole_blocks_in_front(tokenizer, windows, item_sids, block):
    prompt = prompts.next_negative_prompter(tokenizer, align_to=block, max_negatives=5)
    fill = tokenizer.convert_tokens_to_ids(FILL_TOKEN)
    fills = set()
    for w in windows[:30]:
        ids = encode_prompt(tokenizer, prompt(w, item_sids, "full"))
        own = encode_prompt(tokenizer, prompts.next_negative_prompt(w, item_sids, "full", 5))
        assert len(ids) % block == 0
        filled = len(ids) - len(own)
        assert 0 <= filled < block
        assert ids[:filled] == [fill] * filled
        assert ids[filled:] == own  # the prompt's own tokens are what they were
        fills.add(filled)
    assert len(fills) > 1  # the windows' prompts differ in length; each gets its own fill


def test_a_saved_prompt_config_aligns_as_training_did(tmp_path, windows, item_sids, tokenizer):
    w = _window_with_both(windows)
    prompts.save_prompt_config(tmp_path, context="full", max_negatives=3, align_to=32)
    kwargs = prompts.load_prompt_config(tmp_path)
    context = kwargs.pop("context")
    text = prompts.next_negative_prompter(tokenizer, **kwargs)(w, item_sids, context)
    assert len(encode_prompt(tokenizer, text)) % 32 == 0
    assert text.endswith(prompts.next_negative_prompt(w, item_sids, "full", max_negatives=3))
    # A model saved before prompts were aligned: its prompts stay exactly as they were.
    unaligned = prompts.next_negative_prompter(tokenizer, max_negatives=3)(w, item_sids, "full")
    assert unaligned == prompts.next_negative_prompt(w, item_sids, "full", max_negatives=3)


def test_aligning_needs_the_fill_token():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "next": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    old = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    assert align_prompt(old, "next", 0) == "next"
    with pytest.raises(ValueError, match="no <\\|fill\\|> token"):
        align_prompt(old, "next", 32)


def test_trending_opens_the_prompt_most_dismissed_last(windows, item_sids, tokenizer):
    w = _window_with_both(windows)
    assert len(w.trending_negatives) >= 3
    plain = prompts.next_negative_prompt(w, item_sids, "negatives")
    text = prompts.next_negative_prompt(w, item_sids, "negatives", trending=3)
    assert text.startswith(prompts.TRENDING)
    assert text.endswith(plain)
    shown = parse_sids(text.removesuffix(plain), 3)
    assert shown == [item_sids.sid_of(i) for i in w.trending_negatives[:3][::-1]]
    assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]
