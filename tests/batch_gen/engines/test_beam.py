import numpy as np
import pytest

from conrec.batch_gen.engines.beam import (
    Beams,
    allowed_mask,
    best_sequences,
    excluded_mask,
    excluded_tokens,
    exclusions,
    expand,
    initial_beams,
    plan_step,
)
from conrec.model.trie import SIDTrie

NEG = -np.inf


def test_expand_keeps_the_best_extensions_across_beams():
    beams = Beams(
        tokens=np.array([[[1], [2]]]), scores=np.array([[-1.0, -2.0]]), parents=np.zeros((1, 2))
    )
    top_tokens = np.array([[[10, 11], [20, 21]]])
    top_logprobs = np.array([[[-3.0, -0.5], [-0.1, -5.0]]])
    out = expand(beams, top_tokens, top_logprobs, width=3)
    assert out.tokens.tolist() == [[[1, 11], [2, 20], [1, 10]]]
    assert out.scores.tolist() == [[-1.5, -2.1, -4.0]]
    assert out.parents.tolist() == [[0, 1, 0]]


def test_expand_breaks_ties_by_token_id_then_parent():
    beams = Beams(tokens=np.array([[[1], [2]]]), scores=np.zeros((1, 2)), parents=np.zeros((1, 2)))
    top_tokens = np.array([[[7, 5], [5, 9]]])
    top_logprobs = np.full((1, 2, 2), -1.0)
    out = expand(beams, top_tokens, top_logprobs, width=4)
    assert out.tokens[0, :, 1].tolist() == [5, 5, 7, 9]
    assert out.parents.tolist() == [[0, 1, 0, 1]]


def test_padding_stays_impossible_and_is_dropped_from_results():
    top_tokens = np.array([[[4, 0, 0]], [[5, 6, 0]]])
    top_logprobs = np.array([[[-0.2, NEG, NEG]], [[-1.0, -2.0, NEG]]])
    out = expand(initial_beams(2), top_tokens, top_logprobs, width=3)
    assert np.isneginf(out.scores[0, 1:]).all()
    best = best_sequences(out, k=3)
    assert best[0] == [((4,), pytest.approx(-0.2))]
    assert [tokens for tokens, _ in best[1]] == [(5,), (6,)]


def test_best_sequences_returns_at_most_k_best_first():
    out = expand(initial_beams(1), np.array([[[3, 1, 2]]]), np.array([[[-3.0, -1.0, -2.0]]]), 3)
    assert best_sequences(out, k=2) == [[((1,), -1.0), ((2,), -2.0)]]


def test_allowed_mask_follows_the_trie_and_masks_everything_off_it():
    trie = SIDTrie([(3, 5), (3, 6), (4, 5)])
    mask = allowed_mask(trie, np.array([[3], [4], [9]]), vocab_size=8)
    assert np.flatnonzero(mask[0]).tolist() == [5, 6]
    assert np.flatnonzero(mask[1]).tolist() == [5]
    assert not mask[2].any()


def test_exclusions_clear_only_the_tokens_leading_to_that_prompts_excluded_sids():
    trie = SIDTrie([(3, 5), (3, 6), (4, 5), (4, 7)])
    excluded = exclusions([[(3, 5), (3, 6)], [(4, 5)]], trie)
    # Prompt 0 excludes both SIDs under 3, so 3 itself is banned at the first level.
    assert excluded[0] == {(3,): frozenset({5, 6}), (): frozenset({3})}
    assert excluded[1] == {(4,): frozenset({5})}
    prefixes = np.array([[3], [4], [3], [4]])  # 2 prompts x 2 beams
    out = excluded_mask(prefixes, 2, excluded, vocab_size=8)
    assert np.flatnonzero(out[0]).tolist() == [5, 6]  # prompt 0, prefix (3,)
    assert not out[1].any()  # prompt 0, prefix (4,)
    assert not out[2].any()  # prompt 1, prefix (3,)
    assert np.flatnonzero(out[3]).tolist() == [5]
    assert excluded_mask(prefixes, 2, None, vocab_size=8) is None
    assert excluded_tokens(None, 0, (3,)) == frozenset()
    assert exclusions([[(9, 9)]], trie) == [{}]  # not a catalogue SID: nothing to exclude


def test_plan_step_queries_only_beams_with_a_choice():
    trie = SIDTrie([(1, 2, 3), (1, 2, 4), (1, 5, 6), (7, 8, 9)])
    # Prompt 0: beams (1,) and (7,) and an empty slot; prompt 1: beam (1,), its 5 excluded.
    beams = Beams(
        tokens=np.array([[[1], [7], [0]], [[1], [7], [0]]]),
        scores=np.array([[-0.1, -0.2, NEG], [-0.3, NEG, NEG]]),
        parents=np.zeros((2, 3), dtype=np.int64),
    )
    excluded = [{}, {(1,): frozenset({5})}]
    plan = plan_step(trie, beams, excluded)
    assert plan.queried == [(0, 0, (1,), frozenset()), (1, 0, (1,), frozenset({5}))]
    assert plan.forced == [(0, 1, 8)]


def test_plan_step_forces_single_continuations_and_ends_fully_excluded_beams():
    trie = SIDTrie([(1, 2, 3), (1, 2, 4), (1, 5, 6)])
    beams = Beams(
        tokens=np.array([[[1, 2], [1, 5]]]),
        scores=np.array([[-0.5, -0.7]]),
        parents=np.zeros((1, 2), dtype=np.int64),
    )
    plan = plan_step(trie, beams, [{(1, 2): frozenset({3, 4})}])
    assert plan.queried == []  # (1, 2) has both continuations excluded: it ends
    assert plan.forced == [(0, 1, 6)]
