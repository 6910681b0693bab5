import numpy as np
import torch

from conrec.model.constrained import SIDLogitsProcessor, build_sid_trie, sid_token_ids
from conrec.model.likelihood import generate_sids
from conrec.model.sids import parse_sid
from conrec.model.trie import SIDTrie


def _all_paths(trie: SIDTrie) -> set[tuple[int, ...]]:
    """Every token sequence the trie admits up to EOS, by walking `allowed`."""
    done, stack = set(), [()]
    while stack:
        prefix = stack.pop()
        for tok in trie.allowed(prefix).tolist():
            if tok == trie.eos_token_id:
                done.add(prefix)
            else:
                stack.append((*prefix, tok))
    return done


def test_trie_admits_exactly_the_catalogue_sids(item_sids, tokenizer, trie):
    catalogue = {tuple(sid_token_ids(tokenizer, c)) for c in item_sids.codes.tolist()}
    assert _all_paths(trie) == catalogue
    assert len(trie) == len({tuple(c) for c in item_sids.codes.tolist()})
    # after a complete SID only EOS may follow
    some = next(iter(catalogue))
    assert trie.allowed(some).tolist() == [tokenizer.eos_token_id]


def test_processor_masks_everything_on_a_dead_prefix(tokenizer):
    sid = sid_token_ids(tokenizer, (1, 2, 3))
    small = build_sid_trie([(1, 2, 3)], tokenizer)
    vocab = len(tokenizer)
    prompt = torch.tensor([[5, 6], [5, 6]])
    proc = SIDLogitsProcessor(small, prompt_length=2)
    # row 0: valid prefix <a_1>; row 1: dead prefix <a_2>
    dead = sid_token_ids(tokenizer, (2, 0, 0))[0]
    ids = torch.cat([prompt, torch.tensor([[sid[0]], [dead]])], dim=1)
    out = proc(ids, torch.zeros(2, vocab))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [sid[1]]
    assert torch.isinf(out[1]).all()
    # the prompt length is read on the first call when not given
    lazy = SIDLogitsProcessor(small)
    first = lazy(prompt, torch.zeros(2, vocab))
    assert lazy.prompt_length == 2
    assert (torch.isfinite(first).nonzero()[:, 1] == sid[0]).all()


def test_constrained_generation_yields_catalogue_sids(tiny_model, tokenizer, trie, item_sids):
    prompts = ["Not interested: none. Next not interested:", "The item titled toy story is:"]
    free = generate_sids(tiny_model, tokenizer, prompts, None, trie.depth + 1)
    constrained = generate_sids(tiny_model, tokenizer, prompts, trie, trie.depth + 1)
    catalogue = {tuple(c) for c in item_sids.codes.tolist()}
    for text in constrained:
        assert parse_sid(text, 3) in catalogue
    # an untrained model decoding freely does not produce SIDs: the trie is what makes them valid
    assert any(parse_sid(t, 3) is None for t in free)
    assert np.all([len(t.split()) == 3 for t in constrained])
