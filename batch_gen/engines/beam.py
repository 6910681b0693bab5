"""Beam bookkeeping over SID tokens: data containers and pure functions, no model calls.

Engines compute, per live beam, the best allowed next tokens and their log-probs; `expand` keeps
the best extensions per prompt. Every SID has the trie's depth in tokens, so beams all finish
together and need no length normalisation. An EOS after a complete SID is the only token the
trie allows there, so its masked log-prob is 0 and the search stops at the trie's depth.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from conrec.model.trie import SIDTrie


@dataclass(frozen=True)
class Beams:
    """The beams of a batch of prompts after some SID tokens.

    tokens: [prompts, width, steps] token ids generated so far.
    scores: [prompts, width] cumulative log-probs, best first; -inf marks an empty slot (the trie
        had fewer continuations than the width).
    parents: [prompts, width] slot in the previous step's beams each beam extends; engines
        follow them to find a beam's earlier SID tokens in their KV cache.
    """

    tokens: np.ndarray
    scores: np.ndarray
    parents: np.ndarray

    @property
    def width(self) -> int:
        return self.scores.shape[1]


def initial_beams(num_prompts: int) -> Beams:
    return Beams(
        tokens=np.zeros((num_prompts, 1, 0), dtype=np.int64),
        scores=np.zeros((num_prompts, 1), dtype=np.float64),
        parents=np.zeros((num_prompts, 1), dtype=np.int64),
    )


def allowed_mask(
    trie: SIDTrie, prefixes: np.ndarray, vocab_size: int, column_of: np.ndarray | None = None
) -> np.ndarray:
    """[beams, vocab] bool: the tokens the trie allows after each prefix ([beams, steps]).
    With `column_of` (token id -> column), the columns are those of a logits matrix that holds
    some tokens only (`vocab_size` of them)."""
    # Beams of one level share few distinct prefixes; ask the trie once per distinct prefix.
    unique, inverse = np.unique(prefixes, axis=0, return_inverse=True)
    mask = np.zeros((len(unique), vocab_size), dtype=bool)
    for row, prefix in enumerate(unique):
        allowed = trie.allowed(prefix)
        mask[row, allowed if column_of is None else column_of[allowed]] = True
    return mask[inverse.reshape(-1)]


# Per prompt: a token prefix -> the next tokens it may not take.
Exclusions = list[dict[tuple[int, ...], frozenset[int]]]


def exclusions(token_sequences: Sequence[Collection[Sequence[int]]], trie: SIDTrie) -> Exclusions:
    """Per prompt, the tokens that lead only to its excluded SIDs (token ids), at every level.

    Banning a prefix whose every completion is excluded (not just the excluded SIDs' last
    tokens) keeps each live beam completable, so a search of width k still returns k SIDs.
    Engines drop these tokens after the trie-masked log-softmax: excluding SIDs removes them
    from the ranking without changing any other SID's score.
    """
    out: Exclusions = []
    for sequences in token_sequences:
        banned: dict[tuple[int, ...], set[int]] = {}
        for seq in sequences:
            seq = tuple(int(t) for t in seq)
            if seq not in trie:
                continue
            for cut in range(len(seq) - 1, -1, -1):
                prefix = seq[:cut]
                banned.setdefault(prefix, set()).add(seq[cut])
                if len(banned[prefix]) < len(trie.allowed(prefix)):
                    break  # the prefix keeps a completion: its own prefix stays allowed
        out.append({prefix: frozenset(tokens) for prefix, tokens in banned.items()})
    return out


def excluded_tokens(excluded: Exclusions | None, prompt: int, prefix: Sequence[int]) -> frozenset:
    """Tokens that may not follow `prefix` for `prompt` (they lead only to excluded SIDs)."""
    if not excluded:
        return frozenset()
    return excluded[prompt].get(tuple(int(t) for t in prefix), frozenset())


def excluded_mask(
    prefixes: np.ndarray,
    width: int,
    excluded: Exclusions | None,
    vocab_size: int,
    column_of: np.ndarray | None = None,
) -> np.ndarray | None:
    """[prompts * width, vocab] bool, one row per beam: the tokens that lead only to SIDs
    excluded for the beam's prompt; None when nothing is excluded. `column_of` as in
    `allowed_mask`."""
    if not excluded:
        return None
    mask = np.zeros((len(prefixes), vocab_size), dtype=bool)
    for row, prefix in enumerate(prefixes.tolist()):
        banned = excluded_tokens(excluded, row // width, prefix)
        if banned:
            banned = np.fromiter(banned, dtype=np.int64)
            mask[row, banned if column_of is None else column_of[banned]] = True
    return mask


@dataclass(frozen=True)
class StepPlan:
    """What one level needs from the model: the live beams it must score, and those it need
    not. A beam the trie lets continue one way only is forced: that token's trie-masked
    log-prob is exactly 0, whatever the model says, so engines that pay per beam skip it."""

    # (prompt, slot, prefix, tokens banned after it) of each beam the model must score.
    queried: list[tuple[int, int, tuple[int, ...], frozenset[int]]]
    # (prompt, slot, the one token allowed) of each forced beam.
    forced: list[tuple[int, int, int]]


def plan_step(trie: SIDTrie, beams: Beams, excluded: Exclusions | None) -> StepPlan:
    """Sorts the live beams (finite score) into queried and forced ones. A beam whose every
    continuation is excluded is in neither: it ends here."""
    queried, forced = [], []
    for p, j in np.argwhere(np.isfinite(beams.scores)).tolist():
        prefix = tuple(beams.tokens[p, j].tolist())
        allowed = trie.allowed(prefix)
        banned = excluded_tokens(excluded, p, prefix)
        if len(banned) >= len(allowed):
            continue
        if len(allowed) == 1:
            forced.append((p, j, int(allowed[0])))
        else:
            queried.append((p, j, prefix, banned))
    return StepPlan(queried, forced)


def expand(beams: Beams, top_tokens: np.ndarray, top_logprobs: np.ndarray, width: int) -> Beams:
    """The `width` best one-token extensions of each prompt's beams.

    top_tokens, top_logprobs: [prompts, beams.width, n] each beam's best allowed next tokens and
    their log-probs (-inf pads rows with fewer than n allowed tokens).
    Ties are broken by token id, then parent slot, so engines agreeing on scores agree on order.
    """
    num_prompts, old_width, n = top_tokens.shape
    candidates = (beams.scores[:, :, None] + top_logprobs).reshape(num_prompts, old_width * n)
    tokens = top_tokens.reshape(num_prompts, old_width * n)
    parents = np.broadcast_to(np.arange(old_width)[None, :, None], top_tokens.shape).reshape(
        num_prompts, old_width * n
    )
    order = np.lexsort((parents, tokens, -candidates), axis=-1)[:, :width]
    new_parents = np.take_along_axis(parents, order, axis=1)
    history = np.take_along_axis(beams.tokens, new_parents[:, :, None], axis=1)
    new_tokens = np.take_along_axis(tokens, order, axis=1)
    return Beams(
        tokens=np.concatenate([history, new_tokens[:, :, None]], axis=2),
        scores=np.take_along_axis(candidates, order, axis=1),
        parents=new_parents,
    )


def best_sequences(beams: Beams, k: int) -> list[list[tuple[tuple[int, ...], float]]]:
    """Per prompt, the token ids and scores of its k best complete beams, best first."""
    tokens, scores = beams.tokens[:, :k].tolist(), beams.scores[:, :k].tolist()
    return [
        [(tuple(t), s) for t, s in zip(row_tokens, row_scores, strict=True) if s != -np.inf]
        for row_tokens, row_scores in zip(tokens, scores, strict=True)
    ]
