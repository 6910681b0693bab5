"""Trie-constrained beam search on vLLM: an own beam loop over `LLM.generate`.

Each SID level is one `generate` call with one single-token request per live beam, restricted to
the tokens the trie allows after that beam (`allowed_token_ids`). Prefix caching keeps the
prompts' KV blocks from the first level, so later levels compute only the tail after the last
full cached block; a small block size keeps that tail short. `logprobs_mode="processed_logprobs"`
makes vLLM return log-probs after the allowed-token mask, i.e. the same masked log-softmax the
HF engine scores with.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from batch_gen.engines.base import (
    BeamSearchEngine,
    EngineConfig,
    ScoredSID,
    SIDDecoder,
    chunks,
    encode_prompts,
)
from batch_gen.engines.beam import (
    Beams,
    Exclusions,
    best_sequences,
    excluded_tokens,
    expand,
    initial_beams,
)
from model.sids import SID
from model.trie import SIDTrie

# Prefix caching reuses whole blocks only; the CPU attention backend takes multiples of 32.
PREFIX_BLOCK_SIZE = 32


@contextmanager
def _multiprocessing_env(enabled: bool) -> Iterator[None]:
    # vLLM reads this switch only while building the engine, and offers no argument for it.
    key = "VLLM_ENABLE_V1_MULTIPROCESSING"
    previous = os.environ.get(key)
    os.environ[key] = "1" if enabled else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key)
        else:
            os.environ[key] = previous


class VLLMBeamEngine(BeamSearchEngine):
    def __init__(self, config: EngineConfig, trie: SIDTrie):
        from vllm import LLM

        self.config = config
        self.trie = trie
        with _multiprocessing_env(not config.in_process):
            self.llm = LLM(
                model=config.model_path,
                tokenizer=config.model_path,
                dtype=config.dtype,
                max_model_len=config.max_model_len,
                max_logprobs=config.max_logprobs,
                kv_cache_memory_bytes=int(config.kv_cache_gib * 2**30),
                enable_prefix_caching=True,
                block_size=PREFIX_BLOCK_SIZE,
                logprobs_mode="processed_logprobs",
                enforce_eager=config.enforce_eager,
                max_num_seqs=config.max_num_seqs,
                max_num_batched_tokens=config.max_num_batched_tokens,
                seed=config.seed,
            )
        self.tokenizer = self.llm.get_tokenizer()
        self.decode_sid = SIDDecoder(self.tokenizer, trie.depth)

    def prefill(self, prompts: list[str]) -> None:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
        for batch in chunks(encode_prompts(self.tokenizer, prompts), self.config.batch_size):
            self.llm.generate(
                [TokensPrompt(prompt_token_ids=ids) for ids in batch], params, use_tqdm=False
            )

    def generate_topk(
        self, prompts: list[str], k: int, exclude: Sequence[Collection[SID]] | None = None
    ) -> list[list[ScoredSID]]:
        width = self.config.width_for(k)
        if width > self.config.max_logprobs:
            raise ValueError(f"beam width {width} needs max_logprobs >= {width}")
        size = self.config.batch_size
        excluded = self.decode_sid.exclusions(exclude, self.trie)
        results: list[list[ScoredSID]] = []
        for start, batch in enumerate(chunks(encode_prompts(self.tokenizer, prompts), size)):
            batch_excluded = excluded[start * size : (start + 1) * size] if excluded else None
            beams = initial_beams(len(batch))
            for _ in range(self.trie.depth):
                beams = self._step(batch, beams, width, batch_excluded)
            results.extend(
                [(self.decode_sid(tokens), score) for tokens, score in row]
                for row in best_sequences(beams, k)
            )
        return results

    def _step(
        self, prompt_ids: list[list[int]], beams: Beams, width: int, excluded: Exclusions | None
    ) -> Beams:
        from vllm import SamplingParams, TokensPrompt

        # Beams of a level share few prefixes, so share their (validated once) sampling params.
        # An excluded token is dropped from the returned log-probs (the trie-masked
        # log-softmax, as in the HF engine), so ask for that many more.
        params_by_key: dict[tuple, SamplingParams] = {}
        live, requests, params, banned_of = [], [], [], []
        for p, j in np.argwhere(np.isfinite(beams.scores)).tolist():
            prefix = tuple(beams.tokens[p, j].tolist())
            banned = excluded_tokens(excluded, p, prefix)
            allowed = self.trie.allowed(prefix)
            if len(banned) >= len(allowed):  # every continuation excluded: the beam ends
                continue
            key = (prefix, len(banned))
            if key not in params_by_key:
                params_by_key[key] = SamplingParams(
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=min(width + len(banned), self.config.max_logprobs),
                    allowed_token_ids=allowed.tolist(),
                    detokenize=False,
                    # Nothing mutates these per request; a deep copy each would cost more.
                    skip_clone=True,
                )
            live.append((p, j))
            banned_of.append(banned)
            requests.append(TokensPrompt(prompt_token_ids=prompt_ids[p] + list(prefix)))
            params.append(params_by_key[key])
        outputs = self.llm.generate(requests, params, use_tqdm=False) if requests else []
        top_tokens = np.zeros((*beams.scores.shape, width), dtype=np.int64)
        top_logprobs = np.full((*beams.scores.shape, width), -np.inf)
        for (p, j), banned, output in zip(live, banned_of, outputs, strict=True):
            # The sampled token is returned beside the top ones, so there may be one more.
            ranked = sorted(
                (kv for kv in output.outputs[0].logprobs[0].items() if kv[0] not in banned),
                key=lambda kv: kv[1].logprob,
                reverse=True,
            )[:width]
            for n, (token, logprob) in enumerate(ranked):
                top_tokens[p, j, n] = token
                top_logprobs[p, j, n] = logprob.logprob
        return expand(beams, top_tokens, top_logprobs, width)
