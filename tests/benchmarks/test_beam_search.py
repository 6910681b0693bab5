"""Nightly batch: constrained beam search top-20 cost against a prefill pass, per engine.

64 users, 92-token prompts, 3 SID tokens, a tiny random Qwen3 on this machine's CPU. Every
ratio compares two timings taken on the same engine in the same run. Run with
`pytest -m benchmark tests/benchmarks/test_beam_search.py -s`; see docs/benchmarks.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch

from batch_gen.engines.base import EngineConfig, encode_prompts
from batch_gen.engines.hf import HFBeamEngine
from batch_gen.engines.vllm_engine import VLLMBeamEngine
from model.constrained import SIDLogitsProcessor, build_sid_trie
from tests.batch_gen.engines.tiny_setup import build_tiny_setup

pytestmark = pytest.mark.benchmark

USERS, PROMPT_TOKENS, K = 64, 92, 20


def fastest_seconds(
    runs: dict[str, Callable[[], object]], repeats: int, before: Callable[[], object] = lambda: None
) -> dict[str, float]:
    """Best wall time of each run. The runs are interleaved and the minimum kept because the
    machine is shared: other load only ever adds time, and it hits every run alike."""
    for run in runs.values():
        run()  # warm-up: first calls pay for lazy initialisation
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            before()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tiny = build_tiny_setup(tmp_path_factory.mktemp("bench_backbone"))
    trie = build_sid_trie(tiny.sids, tiny.tokenizer)
    config = EngineConfig(model_path=str(tiny.path), batch_size=USERS, max_logprobs=2 * K)
    prompts = tiny.prompts(USERS, length=PROMPT_TOKENS)
    return tiny, trie, config, prompts


def check_valid(results, catalogue) -> None:
    assert len(results) == USERS
    assert all(len(row) == K for row in results)
    invalid = sum(sid not in catalogue for row in results for sid, _ in row)
    assert invalid == 0


def test_beam_search_cost_vs_prefill(setup):
    tiny, trie, config, prompts = setup
    catalogue = set(tiny.sids)

    hf = HFBeamEngine(config, trie)
    check_valid(hf.generate_topk(prompts, K), catalogue)
    ids = torch.tensor(encode_prompts(hf.tokenizer, prompts))

    def hf_generate():
        with torch.inference_mode():
            hf.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                num_beams=K,
                num_return_sequences=K,
                max_new_tokens=trie.depth,
                do_sample=False,
                logits_processor=[SIDLogitsProcessor(trie)],
                pad_token_id=hf.tokenizer.pad_token_id,
            )

    hf_times = fastest_seconds(
        {
            "prefill": lambda: hf.prefill(prompts),
            "beam": lambda: hf.generate_topk(prompts, K),
            "generate": hf_generate,
        },
        repeats=5,
    )

    vllm = VLLMBeamEngine(config, trie)
    from vllm import TokensPrompt
    from vllm.sampling_params import BeamSearchParams

    check_valid(vllm.generate_topk(prompts, K), catalogue)
    # Each timing starts cold: a prompt cached by an earlier run would make prefill free.
    cold = vllm.llm.reset_prefix_cache
    token_prompts = [TokensPrompt(prompt_token_ids=p) for p in ids.tolist()]
    builtin = BeamSearchParams(beam_width=K, max_tokens=trie.depth)
    vllm_times = fastest_seconds(
        {
            "prefill": lambda: vllm.prefill(prompts),
            "beam": lambda: vllm.generate_topk(prompts, K),
            "builtin": lambda: vllm.llm.beam_search(token_prompts, builtin),
        },
        repeats=3,
        before=cold,
    )
    hf_prefill, hf_beam = hf_times["prefill"], hf_times["beam"]
    vllm_prefill, vllm_beam = vllm_times["prefill"], vllm_times["beam"]

    ratios = {
        "hf_beam_vs_prefill_ratio": hf_beam / hf_prefill,
        "vllm_beam_vs_prefill_ratio": vllm_beam / vllm_prefill,
        "hf_generate_num_beams_vs_prefill_ratio": hf_times["generate"] / hf_prefill,
        "vllm_builtin_beam_search_vs_prefill_ratio": vllm_times["builtin"] / vllm_prefill,
        "hf_users_per_s": USERS / hf_beam,
        "vllm_users_per_s": USERS / vllm_beam,
        "vllm_vs_hf_users_per_s_ratio": hf_beam / vllm_beam,
    }
    # The headline is the engine the batch job should run here: the cheaper of the two.
    ratios["beam_vs_prefill_ratio"] = min(
        ratios["hf_beam_vs_prefill_ratio"], ratios["vllm_beam_vs_prefill_ratio"]
    )
    print(f"\nhf seconds: {hf_times}\nvllm seconds: {vllm_times}")
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    # Prefilling once and reusing the KV cache must beat re-prefilling every beam.
    assert ratios["hf_beam_vs_prefill_ratio"] < ratios["hf_generate_num_beams_vs_prefill_ratio"]
