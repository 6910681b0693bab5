"""Trie-constrained beam search on vLLM: an own beam loop over vLLM's engine core.

Each SID level sends one single-token request per live beam (the prompt plus the beam's SID tokens),
restricted to the tokens the trie allows after that beam (`allowed_token_ids`). A beam the trie lets
continue one way only sends none: its masked log-prob is 0 (`plan_step`); in a sparse catalogue that
is most beams of the last level. Prefix caching keeps the prompts' KV blocks from the first level,
so later levels compute only the tail after the last full cached block (vLLM caches whole blocks
only; the CPU attention backend's smallest block is 32 tokens). Prompts built with training's
`align_to` (fill tokens in front, `conrec.model.backbone.align_prompt`) are whole blocks, so that
tail is the beam's own SID tokens. `logprobs_mode="processed_logprobs"` makes vLLM return log-probs
after the allowed-token mask, i.e. the same masked log-softmax the HF engine scores with.

The requests go to the engine core directly (`LLM.llm_engine.engine_core`), built by copying a
request validated once per (trie prefix, log-prob count; `conrec.batch_gen.engines.vllm_internals`),
and the raw log-prob arrays are read back: `LLM.generate`'s per-request rendering, validation and
output objects cost more than the model itself for thousands of one-token requests. What is left per
request is vLLM's own scheduling and batch bookkeeping and the prompt tail (timed in
docs/benchmarks.md); see `conrec.batch_gen.engines.choice.resolve_engine`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from copy import copy

import numpy as np

from conrec.batch_gen.engines.base import (
    BeamSearchEngine,
    EngineConfig,
    ScoredSID,
    SIDDecoder,
    chunks,
    encode_prompts,
)
from conrec.batch_gen.engines.beam import (
    Beams,
    Exclusions,
    best_sequences,
    expand,
    initial_beams,
    plan_step,
)
from conrec.batch_gen.engines.vllm_internals import engine_request
from conrec.model.sids import SID
from conrec.model.trie import SIDTrie

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
        self._tasks = self.llm.llm_engine.get_supported_tasks()
        self._templates: dict[tuple, object] = {}
        self._ids = itertools.count()

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
        prompt_ids = encode_prompts(self.tokenizer, prompts)
        longest = max((len(ids) for ids in prompt_ids), default=0)
        if longest + self.trie.depth > self.config.max_model_len:
            raise ValueError(
                f"a prompt of {longest} tokens plus {self.trie.depth} SID tokens exceeds "
                f"max_model_len {self.config.max_model_len}"
            )
        for start, batch in enumerate(chunks(prompt_ids, size)):
            batch_excluded = excluded[start * size : (start + 1) * size] if excluded else None
            beams = initial_beams(len(batch))
            for _ in range(self.trie.depth):
                beams = self._step(batch, beams, width, batch_excluded)
            results.extend(
                [(self.decode_sid(tokens), score) for tokens, score in row]
                for row in best_sequences(beams, k)
            )
        return results

    def _request(
        self, token_ids: list[int], prefix: tuple[int, ...], width: int, banned: frozenset
    ):
        """An engine-core request for one beam: a copy of a request validated once per
        (trie prefix, log-prob count), with this beam's tokens."""
        num_logprobs = min(width + len(banned), self.config.max_logprobs)
        key = (prefix, num_logprobs)
        template = self._templates.get(key)
        if template is None:
            from vllm import SamplingParams

            params = SamplingParams(
                max_tokens=1,
                temperature=0.0,
                logprobs=num_logprobs,
                allowed_token_ids=self.trie.allowed(prefix).tolist(),
                detokenize=False,
            )
            template = self._templates[key] = engine_request(
                self.llm, "sid-beam", token_ids, params, self._tasks
            )
        request = copy(template)
        request.prompt_token_ids = token_ids
        return request

    def _run(self, requests: list) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per request, its top allowed token ids and their masked log-probs, best first.

        The requests go straight to the engine core and its raw outputs are read back: the
        LLM front end's per-request rendering, validation and output objects would cost more
        than the model here (one-token requests, thousands per level).
        """
        core = self.llm.llm_engine.engine_core
        index: dict[str, int] = {}
        for i, request in enumerate(requests):
            request.request_id = request.external_req_id = f"sid-beam-{next(self._ids)}"
            index[request.request_id] = i
        results: list = [None] * len(requests)
        remaining, idle = len(requests), 0
        try:
            for request in requests:
                core.add_request(request)
            while remaining:
                outputs = core.get_output().outputs
                idle = 0 if outputs else idle + 1
                if idle > 1000:
                    raise RuntimeError(f"vLLM stopped with {remaining} beam requests pending")
                for out in outputs:
                    i = index.pop(out.request_id, None)
                    if i is None or out.new_logprobs is None:
                        continue
                    # Column 0 is the sampled token, then the top ones.
                    n = requests[i].sampling_params.logprobs
                    results[i] = (
                        out.new_logprobs.logprob_token_ids[0, 1 : n + 1],
                        out.new_logprobs.logprobs[0, 1 : n + 1],
                    )
                    remaining -= 1
        except BaseException:
            if index:
                core.abort_requests(list(index))
            raise
        return results

    def _step(
        self, prompt_ids: list[list[int]], beams: Beams, width: int, excluded: Exclusions | None
    ) -> Beams:
        # One single-token request per beam the trie lets continue more than one way, each
        # restricted to the tokens the trie allows after that beam. An excluded token is dropped
        # from the returned log-probs (the trie-masked log-softmax, as in the HF engine), so a
        # beam with banned continuations asks for that many more.
        plan = plan_step(self.trie, beams, excluded)
        top_tokens = np.zeros((*beams.scores.shape, width), dtype=np.int64)
        top_logprobs = np.full((*beams.scores.shape, width), -np.inf)
        for p, j, token in plan.forced:
            top_tokens[p, j, 0], top_logprobs[p, j, 0] = token, 0.0
        requests = [
            self._request(prompt_ids[p] + list(prefix), prefix, width, banned)
            for p, _, prefix, banned in plan.queried
        ]
        for (p, j, _, banned), (tokens, logprobs) in zip(
            plan.queried, self._run(requests), strict=True
        ):
            if banned:  # the best `width` of the others
                keep = ~np.isin(tokens, list(banned))
                tokens, logprobs = tokens[keep][:width], logprobs[keep][:width]
            top_tokens[p, j, : len(tokens)] = tokens
            top_logprobs[p, j, : len(tokens)] = logprobs
        return expand(beams, top_tokens, top_logprobs, width)
