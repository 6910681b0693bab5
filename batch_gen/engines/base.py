"""The interface every beam search engine implements, and the options they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from model.sids import SID, parse_sid

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
    kv_cache_gib: float = field(default=1.0, metadata={"help": "KV-cache memory for vLLM (GiB)."})
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
            "without a second torch import (~20 s instead of ~70 s on 2 CPU cores)."
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
    def generate_topk(self, prompts: list[str], k: int) -> list[list[ScoredSID]]:
        """Per prompt, up to k distinct complete SIDs with their scores, best first."""

    @abstractmethod
    def prefill(self, prompts: list[str]) -> None:
        """One forward pass over the prompts: the cost that beam search is measured against."""


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt, tokenised the same way for every engine."""
    return [list(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"]]


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class SIDDecoder:
    """Token ids of a complete SID -> its codes, memoised (the catalogue bounds the table)."""

    def __init__(self, tokenizer, levels: int):
        self._tokenizer = tokenizer
        self._levels = levels
        self._cache: dict[tuple[int, ...], SID] = {}

    def __call__(self, token_ids: Sequence[int]) -> SID:
        key = tuple(token_ids)
        sid = self._cache.get(key)
        if sid is None:
            sid = parse_sid("".join(self._tokenizer.convert_ids_to_tokens(list(key))), self._levels)
            if sid is None:
                raise ValueError(f"token ids {key} are not a SID")
            self._cache[key] = sid
        return sid
