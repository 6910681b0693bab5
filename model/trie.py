"""Prefix trie over the token ids of the catalogue's SIDs, for constrained decoding.

Engine-agnostic (no torch): the HF logits processor and the vLLM engine ask it which token ids
may follow a generated prefix. A prefix with no continuation gets an empty set, and callers mask
every token then; constrained decoding never falls back to unconstrained decoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class SIDTrie:
    """Token-id prefixes of valid SIDs. `eos_token_id`, if given, may follow a complete SID."""

    def __init__(self, sequences: Iterable[Sequence[int]], eos_token_id: int | None = None):
        self._children: dict[tuple[int, ...], set[int]] = {}
        self._complete: set[tuple[int, ...]] = set()
        self.depth = 0
        for seq in sequences:
            seq = tuple(int(t) for t in seq)
            if self.depth and len(seq) != self.depth:
                raise ValueError(f"all SIDs must have {self.depth} tokens, got {len(seq)}")
            self.depth = len(seq)
            for i in range(len(seq)):
                self._children.setdefault(seq[:i], set()).add(seq[i])
            self._complete.add(seq)
        if not self._complete:
            raise ValueError("a SID trie needs at least one SID")
        self.eos_token_id = eos_token_id
        self._allowed_cache: dict[tuple[int, ...], np.ndarray] = {
            prefix: np.fromiter(sorted(kids), dtype=np.int64)
            for prefix, kids in self._children.items()
        }
        tail = [] if eos_token_id is None else [eos_token_id]
        self._after_complete = np.asarray(tail, dtype=np.int64)
        self._nothing = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._complete)

    def __contains__(self, seq: Sequence[int]) -> bool:
        return tuple(int(t) for t in seq) in self._complete

    def allowed(self, prefix: Sequence[int]) -> np.ndarray:
        """Sorted token ids that may follow `prefix` (the tokens generated so far)."""
        key = tuple(int(t) for t in prefix)
        if key in self._complete:
            return self._after_complete
        return self._allowed_cache.get(key, self._nothing)

    def tokens(self) -> np.ndarray:
        """Sorted ids of every token a SID may contain (the EOS after a SID aside)."""
        return np.unique(np.concatenate(list(self._allowed_cache.values())))

    def sequences(self) -> list[tuple[int, ...]]:
        return sorted(self._complete)
