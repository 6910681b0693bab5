"""The trie's logits processor, driven through vLLM's own batch-update records."""

import itertools

import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from batch_gen.engines.trie_mask import TrieMaskLogitsProcessor, constrained_to

VOCAB = 10


def params(*allowed: int) -> SamplingParams:
    return SamplingParams(max_tokens=1, extra_args=constrained_to(allowed) if allowed else None)


def update(size: int, removed=(), added=(), moved=()) -> BatchUpdate:
    return BatchUpdate(
        batch_size=size,
        removed=list(removed),
        added=[(row, p, [1, 2], []) for row, p in added],
        moved=list(moved),
    )


def allowed_per_row(processor: TrieMaskLogitsProcessor, rows: int) -> list[set[int]]:
    """The tokens each batch row keeps finite after ``apply``."""
    logits = torch.arange(rows * VOCAB, dtype=torch.float32).reshape(rows, VOCAB)
    before = logits.clone()
    out = processor.apply(logits)
    kept = [set(torch.nonzero(torch.isfinite(row)).flatten().tolist()) for row in out]
    # Allowed logits keep their values exactly.
    finite = torch.isfinite(out)
    assert torch.equal(out[finite], before[finite])
    return kept


@pytest.fixture
def processor() -> TrieMaskLogitsProcessor:
    return TrieMaskLogitsProcessor(None, torch.device("cpu"), is_pin_memory=False)


def test_constrained_rows_keep_only_their_tokens_and_others_are_untouched(processor):
    processor.update_state(update(3, added=[(0, params(3, 5)), (1, params()), (2, params(7))]))
    assert allowed_per_row(processor, 3) == [{3, 5}, set(range(VOCAB)), {7}]


def test_rows_follow_removals_moves_and_swaps(processor):
    processor.update_state(update(3, added=[(0, params(1)), (1, params(2, 4)), (2, params(6))]))
    # Row 0 leaves; row 2 moves into its place.
    processor.update_state(
        update(2, removed=[0], moved=[(2, 0, MoveDirectionality.UNIDIRECTIONAL)])
    )
    assert allowed_per_row(processor, 2) == [{6}, {2, 4}]
    processor.update_state(update(2, moved=[(0, 1, MoveDirectionality.SWAP)]))
    assert allowed_per_row(processor, 2) == [{2, 4}, {6}]
    # A removed row reused by an unconstrained request (vLLM then leaves it out of `removed`).
    processor.update_state(update(2, added=[(0, params())]))
    assert allowed_per_row(processor, 2) == [set(range(VOCAB)), {6}]


def test_no_update_keeps_the_masks_and_an_empty_batch_masks_nothing(processor):
    processor.update_state(update(1, added=[(0, params(8, 9))]))
    processor.update_state(None)  # a step without batch changes
    assert allowed_per_row(processor, 1) == [{8, 9}]
    processor.update_state(update(0, removed=[0]))
    assert allowed_per_row(processor, 1) == [set(range(VOCAB))]


def test_sets_of_different_sizes_and_the_store_growing(processor):
    processor.update_state(update(2, added=[(0, params(0, 1, 2, 3)), (1, params(9))]))
    # 500 more distinct sets of 9 tokens outgrow the initial store (4,096 tokens).
    orders = list(itertools.islice(itertools.permutations(range(1, 10)), 500))
    processor.update_state(update(502, added=[(2 + i, params(*o)) for i, o in enumerate(orders)]))
    processor.update_state(update(503, added=[(502, params(0, 1, 2, 3))]))
    kept = allowed_per_row(processor, 503)
    assert kept[:2] == [{0, 1, 2, 3}, {9}]
    assert all(row == set(range(1, 10)) for row in kept[2:502])
    assert kept[502] == {0, 1, 2, 3}


def test_an_empty_allowed_set_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        constrained_to([])
