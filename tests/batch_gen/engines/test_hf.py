"""The HF engine against exhaustive scoring of every catalogue SID with the same model."""

import dataclasses

import pytest
import torch

from conrec.batch_gen.engines.hf import (
    HFBeamEngine,
    constrained_logprobs,
    sid_head,
    tree_attention_mask,
)
from conrec.model.constrained import build_sid_trie


@pytest.fixture(scope="module")
def engine(config, trie) -> HFBeamEngine:
    return HFBeamEngine(config, trie)


def exhaustive_topk(engine: HFBeamEngine, prompt: str, k: int) -> list:
    """Score every SID in the catalogue with full forward passes; no beams, no KV cache reuse."""
    trie = engine.trie
    prompt_ids = engine.tokenizer(prompt)["input_ids"]
    sequences = trie.sequences()
    input_ids = torch.tensor([prompt_ids + list(seq[:-1]) for seq in sequences])
    with torch.inference_mode():
        logits = engine.model(input_ids=input_ids).logits[:, -trie.depth :]
    scored = []
    for row, seq in enumerate(sequences):
        total = 0.0
        for step, token in enumerate(seq):
            allowed = torch.zeros(logits.shape[-1], dtype=torch.bool)
            allowed[torch.from_numpy(trie.allowed(seq[:step]))] = True
            total += constrained_logprobs(logits[row, step], allowed)[token].item()
        scored.append((engine.decode_sid(seq), total))
    return sorted(scored, key=lambda item: -item[1])[:k]


def test_wide_beam_finds_the_exact_topk(engine, tiny, trie, assert_same_topk):
    wide = HFBeamEngine(
        dataclasses.replace(engine.config, beam_width=len(trie)),
        trie,
        model=engine.model,
        tokenizer=engine.tokenizer,
    )
    prompt = tiny.prompts(1, seed=7)[0]
    assert_same_topk(wide.generate_topk([prompt], 10)[0], exhaustive_topk(engine, prompt, 10))


def test_topk_are_distinct_catalogue_sids_best_first(engine, tiny):
    results = engine.generate_topk(tiny.prompts(6), 20)
    catalogue = set(tiny.sids)
    assert len(results) == 6
    for row in results:
        sids = [sid for sid, _ in row]
        scores = [score for _, score in row]
        assert len(sids) == 20
        assert len(set(sids)) == 20
        assert set(sids) <= catalogue
        assert scores == sorted(scores, reverse=True)
        assert all(score < 0 for score in scores)


def test_padding_in_a_batch_does_not_change_results(engine, tiny, assert_same_topk):
    long_prompt = tiny.prompts(1)[0]
    short_prompt = "user history : w1 w2 next :"
    together = engine.generate_topk([long_prompt, short_prompt], 5)
    assert_same_topk(together[1], engine.generate_topk([short_prompt], 5)[0])
    assert_same_topk(together[0], engine.generate_topk([long_prompt], 5)[0])


def test_small_catalogue_returns_fewer_than_k(engine, tiny):
    sids = tiny.sids[:3]
    trie = build_sid_trie(sids, engine.tokenizer)
    small = HFBeamEngine(engine.config, trie, model=engine.model, tokenizer=engine.tokenizer)
    result = small.generate_topk(tiny.prompts(2), 5)
    assert [sorted(sid for sid, _ in row) for row in result] == [sorted(sids)] * 2


def test_tree_mask_shows_each_beam_its_prompt_and_own_tokens_only():
    prompt_mask = torch.tensor([[False, True, True]])
    # Two beams at the second SID level: their level-1 tokens sit in columns 3 and 4, their
    # newest tokens in columns 5 and 6; beam 0 descends from column 4, beam 1 from column 3.
    columns = torch.tensor([[[4, 5], [3, 6]]])
    mask = tree_attention_mask(prompt_mask, columns, kv_length=7)
    visible = (mask == 0)[0, 0]
    assert mask.shape == (1, 1, 2, 7)
    assert torch.nonzero(visible[0]).flatten().tolist() == [1, 2, 4, 5]
    assert torch.nonzero(visible[1]).flatten().tolist() == [1, 2, 3, 6]


def test_excluded_sids_are_never_returned_and_k_still_come_back(engine, tiny, trie):
    prompts = tiny.prompts(3, seed=11)
    full = engine.generate_topk(prompts, 20)
    # Prompt 0 excludes its best three SIDs, prompt 1 nothing, prompt 2 its tenth.
    exclude = [{sid for sid, _ in full[0][:3]}, set(), {full[2][9][0]}]
    got = engine.generate_topk(prompts, 20, exclude=exclude)
    for row, banned in zip(got, exclude, strict=True):
        assert len(row) == 20
        assert not banned & {sid for sid, _ in row}
    assert got[1] == full[1]
    # An exhaustive search (width = catalogue) returns the unexcluded ranking minus exclusions.
    wide = HFBeamEngine(
        dataclasses.replace(engine.config, beam_width=len(trie)),
        trie,
        model=engine.model,
        tokenizer=engine.tokenizer,
    )
    ranking = wide.generate_topk(prompts[:1], 23)[0]
    expected = [sid for sid, _ in ranking if sid not in exclude[0]][:20]
    assert [sid for sid, _ in wide.generate_topk(prompts[:1], 20, exclude[:1])[0]] == expected


def test_excluding_every_sid_leaves_nothing(engine, tiny):
    sids = tiny.sids[:4]
    trie = build_sid_trie(sids, engine.tokenizer)
    small = HFBeamEngine(engine.config, trie, model=engine.model, tokenizer=engine.tokenizer)
    assert small.generate_topk(tiny.prompts(1), 5, exclude=[set(sids)]) == [[]]


def test_the_search_scores_the_sid_rows_only_unless_the_model_reshapes_its_logits(
    engine, tiny, assert_same_topk
):
    weight, _ = engine.sid_head
    assert weight.shape == (len(engine.sid_ids), engine.model.config.hidden_size)
    assert len(engine.sid_ids) < engine.model.config.vocab_size
    # The plain form: the model's own forward over the whole vocabulary.
    plain = HFBeamEngine(engine.config, engine.trie, model=engine.model, tokenizer=engine.tokenizer)
    plain.sid_head = None
    prompts = tiny.prompts(4, seed=3)
    fast, full = engine.generate_topk(prompts, 20), plain.generate_topk(prompts, 20)
    for ours, theirs in zip(fast, full, strict=True):
        assert_same_topk(ours, theirs)
    config = engine.model.config
    config.final_logit_softcapping = 30.0  # as Gemma 2 does after its head
    try:
        assert sid_head(engine.model, torch.arange(3)) is None
    finally:
        del config.final_logit_softcapping
