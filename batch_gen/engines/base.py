"""The interface every beam search engine implements, and the options they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from conrec.batch_gen.engines.beam import Exclusions, exclusions
from conrec.model.backbone import encode_prompt
from conrec.model.sids import SID, level_token, parse_sid
from conrec.model.trie import SIDTrie

ScoredSID = tuple[SID, float]


@dataclass
class EngineConfig:
    """Options of a beam search engine; an engine ignores those that mean nothing to it."""

    model_path: str = field(metadata={"help": "Local directory with the model and tokenizer."})
    dtype: str = field(default="float32", metadata={"help": "Weights and activations dtype."})
    max_model_len: int = field(
        default=1024, metadata={"help": "Longest prompt plus SID tokens (vLLM)."}
    )
    max_logprobs: int = field(
        default=40,
        metadata={
            "help": "Log-probs vLLM may return per step; needs >= beam width "
            "(2 x beam width for vLLM's own LLM.beam_search)."
        },
    )
    # A level holds batch_size x beam width requests, each with a KV block of its own beside the
    # shared prompt blocks: 1,280 blocks of 1.5 MB on SmolLM2-135M in float32. With 1 GiB they
    # queued, and vLLM ran at 0.86x the HF engine's users/s instead of 1.26x (64 users, CPU).
    kv_cache_gib: float = field(default=4.0, metadata={"help": "KV-cache memory for vLLM (GiB)."})
    batch_size: int = field(
        default=64, metadata={"help": "Prompts searched together; bounds KV-cache memory."}
    )
    max_num_seqs: int = field(
        default=1024,
        metadata={
            "help": "vLLM requests per engine step; a level sends batch_size x beam width "
            "one-token requests, and fewer, larger steps cost less overhead."
        },
    )
    max_num_batched_tokens: int = field(
        default=32768, metadata={"help": "vLLM tokens per engine step."}
    )
    beam_width: int | None = field(
        default=None, metadata={"help": "Beams kept per level; None means k of the call."}
    )
    enforce_eager: bool = field(
        default=True,
        metadata={"help": "Skip vLLM's torch.compile: starts in seconds instead of a minute."},
    )
    in_process: bool = field(
        default=True,
        metadata={
            "help": "Run vLLM's engine core in this process: no IPC per step and a start-up "
            "without a second torch import."
        },
    )
    seed: int = field(default=0, metadata={"help": "Engine seed (decoding itself is greedy)."})

    def width_for(self, k: int) -> int:
        # Fewer beams than k could not return k SIDs.
        return max(k, self.beam_width or k)


class BeamSearchEngine(ABC):
    """Top-k catalogue SIDs per prompt by beam search constrained to the SID trie.

    Scores are sums over the SID tokens of log-softmax(logits with every token the trie does not
    allow at that step set to -inf), so both engines rank and score identically.
    """

    @abstractmethod
    def generate_topk(
        self, prompts: list[str], k: int, exclude: Sequence[Collection[SID]] | None = None
    ) -> list[list[ScoredSID]]:
        """Per prompt, up to k distinct complete SIDs with their scores, best first; never one
        of that prompt's `exclude` SIDs (e.g. the user's seen items)."""

    @abstractmethod
    def prefill(self, prompts: list[str]) -> None:
        """One forward pass over the prompts: the cost that beam search is measured against."""


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt, tokenised as training tokenised them."""
    return [encode_prompt(tokenizer, p) for p in prompts]


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class SIDDecoder:
    """Token ids of a complete SID <-> its codes, memoised (the catalogue bounds the tables)."""

    def __init__(self, tokenizer, levels: int):
        self._tokenizer = tokenizer
        self._levels = levels
        self._cache: dict[tuple[int, ...], SID] = {}
        self._token_cache: dict[SID, tuple[int, ...]] = {}

    def tokens(self, sid: Sequence[int]) -> tuple[int, ...]:
        """The token ids of `sid` (one per level)."""
        key = tuple(int(c) for c in sid)
        ids = self._token_cache.get(key)
        if ids is None:
            names = [level_token(level, code) for level, code in enumerate(key)]
            ids = self._token_cache[key] = tuple(self._tokenizer.convert_tokens_to_ids(names))
        return ids

    def exclusions(
        self, exclude: Sequence[Collection[SID]] | None, trie: SIDTrie
    ) -> Exclusions | None:
        """`exclude` (codes per prompt) as the beam search's token-level exclusions."""
        if exclude is None:
            return None
        return exclusions([[self.tokens(sid) for sid in sids] for sids in exclude], trie)

    def __call__(self, token_ids: Sequence[int]) -> SID:
        key = tuple(token_ids)
        sid = self._cache.get(key)
        if sid is None:
            sid = parse_sid("".join(self._tokenizer.convert_ids_to_tokens(list(key))), self._levels)
            if sid is None:
                raise ValueError(f"token ids {key} are not a SID")
            self._cache[key] = sid
        return sid
