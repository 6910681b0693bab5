"""Constrained decoding for HF `generate`: only catalogue SIDs (then EOS) can be generated.

The trie (`conrec.model.trie.SIDTrie`) is engine-agnostic; this module turns it into a
`transformers.LogitsProcessor` and builds it from the codebook's item -> SID table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from conrec.model.sids import format_sid
from conrec.model.trie import SIDTrie


def sid_token_ids(tokenizer, codes: Sequence[int]) -> list[int]:
    """Token ids of one SID (one token per level); raises if a SID token is not in the vocab."""
    text = format_sid(codes)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != len(codes) or tokenizer.unk_token_id in ids:
        raise ValueError(f"{text} is not {len(codes)} SID tokens in this tokenizer")
    return ids


def build_sid_trie(codes: Iterable[Sequence[int]], tokenizer, allow_eos: bool = True) -> SIDTrie:
    """Trie over the token ids of `codes` (e.g. `ItemSIDTable.codes`, one row per item).

    With `allow_eos`, EOS is the only continuation of a complete SID, so generation stops there.
    """
    unique = {tuple(int(c) for c in row) for row in codes}
    sequences = [sid_token_ids(tokenizer, sid) for sid in sorted(unique)]
    return SIDTrie(sequences, eos_token_id=tokenizer.eos_token_id if allow_eos else None)


class SIDLogitsProcessor(LogitsProcessor):
    """Masks every token the trie does not allow after the tokens generated so far.

    `prompt_length` is the (padded) prompt length; if None it is taken from the first call,
    which is the prompt length in HF `generate` (left-padded prompts share one length), so use
    one instance per `generate` call. A row whose prefix has no continuation gets all logits set
    to -inf: decoding is never unconstrained. A row that already emitted EOS is finished (HF
    pads it); it may only repeat EOS, so sampling never sees an all -inf row there.
    """

    def __init__(self, trie: SIDTrie, prompt_length: int | None = None):
        self.trie = trie
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids [B, T], scores [B, V]
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        generated = input_ids[:, self.prompt_length :].tolist()
        mask = torch.full_like(scores, float("-inf"))
        eos = self.trie.eos_token_id
        for row, suffix in enumerate(generated):
            finished = eos is not None and eos in suffix
            allowed = np.asarray([eos]) if finished else self.trie.allowed(suffix)
            allowed = allowed[allowed < scores.shape[1]]
            if len(allowed):
                mask[row, torch.from_numpy(np.asarray(allowed))] = 0.0
        return scores + mask
