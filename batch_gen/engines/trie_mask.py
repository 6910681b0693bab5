"""The SID trie's constraint as a vLLM engine-level logits processor, for the whole batch at once.

vLLM's own per-request constraint (`SamplingParams.allowed_token_ids`) writes a vocabulary-wide
mask row for every request it adds to its batch and clears it when the request leaves: for
one-token beam requests, thousands per level, that bookkeeping was the largest single cost in
the engine besides the model (py-spy, tiny model, CPU). Here a request names its allowed tokens
in `extra_args`; each distinct allowed set is stored once per engine, and a step masks all
constrained rows with a few tensor operations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

# The `SamplingParams.extra_args` key: the token ids the trie allows after the request's prefix.
ALLOWED_KEY = "conrec_allowed_token_ids"


def constrained_to(allowed: Sequence[int]) -> dict[str, list[int]]:
    """`extra_args` restricting a request's next token to `allowed` (non-empty)."""
    if not len(allowed):
        raise ValueError("a constrained request needs at least one allowed token")
    return {ALLOWED_KEY: [int(t) for t in allowed]}


class TrieMaskLogitsProcessor(LogitsProcessor):
    """Sets every logit outside a request's allowed tokens to -inf; leaves other requests be.

    Applied before vLLM computes processed log-probs, so `logprobs_mode="processed_logprobs"`
    returns the trie-masked log-softmax, as with `allowed_token_ids`. Each distinct allowed set
    is stored once, end to end in one growing tensor: at most the trie's edges in all."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.device = device
        self._by_row: dict[int, tuple[int, int]] = {}  # batch row -> its set's (start, length)
        self._sets: dict[tuple[int, ...], tuple[int, int]] = {}  # allowed set -> (start, length)
        self._tokens = torch.empty(4096, dtype=torch.long, device=device)  # the sets, end to end
        self._used = 0
        self._rows: torch.Tensor | None = None  # [R] the constrained batch rows
        # One (batch row, allowed token) pair per allowed token of each constrained row: [P], [P]
        self._pairs: tuple[torch.Tensor, torch.Tensor] | None = None

    def is_argmax_invariant(self) -> bool:
        return False

    def _span_of(self, params: SamplingParams) -> tuple[int, int] | None:
        allowed = (params.extra_args or {}).get(ALLOWED_KEY)
        if allowed is None:
            return None
        key = tuple(allowed)
        span = self._sets.get(key)
        if span is None:
            span = self._sets[key] = self._store(key)
        return span

    def _store(self, tokens: tuple[int, ...]) -> tuple[int, int]:
        start, end = self._used, self._used + len(tokens)
        if end > len(self._tokens):  # doubling: appends cost O(1) amortised
            grown = torch.empty(max(2 * len(self._tokens), end), dtype=torch.long)
            grown = grown.to(self.device)
            grown[:start] = self._tokens[:start]
            self._tokens = grown
        self._tokens[start:end] = torch.tensor(tokens, dtype=torch.long)
        self._used = end
        return start, len(tokens)

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        by_row = self._by_row
        # vLLM reuses a removed request's row for an added one within the same update, and
        # then leaves it out of ``removed``.
        for row in batch_update.removed:
            by_row.pop(row, None)
        for row, params, _, _ in batch_update.added:
            span = self._span_of(params)
            if span is None:
                by_row.pop(row, None)
            else:
                by_row[row] = span
        for a, b, direction in batch_update.moved:
            a_span, b_span = by_row.pop(a, None), by_row.pop(b, None)
            if a_span is not None:
                by_row[b] = a_span
            if b_span is not None and direction == MoveDirectionality.SWAP:
                by_row[a] = b_span
        if not by_row:
            self._rows = self._pairs = None
            return
        rows = torch.tensor(list(by_row), dtype=torch.long)
        starts, lengths = torch.tensor(list(by_row.values()), dtype=torch.long).T
        # Pair p belongs to row r and is token i of r's set: it reads _tokens[start_r + i].
        first = (lengths.cumsum(0) - lengths).repeat_interleave(lengths)  # [P] p's row's 1st p
        within = torch.arange(len(first)) - first  # [P] i
        index = (starts.repeat_interleave(lengths) + within).to(self.device)
        self._rows = rows.to(self.device)
        self._pairs = self._rows.repeat_interleave(lengths.to(self.device)), self._tokens[index]

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if self._pairs is None:
            return logits
        kept = logits[self._pairs]
        logits.index_fill_(0, self._rows, float("-inf"))
        logits[self._pairs] = kept
        return logits
