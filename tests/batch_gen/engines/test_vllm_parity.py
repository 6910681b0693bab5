"""The vLLM engine (real vLLM CPU) against the HF engine on the same checkpoint."""

import pytest

from conrec.batch_gen.engines.base import encode_prompts
from conrec.batch_gen.engines.hf import HFBeamEngine
from conrec.batch_gen.engines.vllm_engine import PREFIX_BLOCK_SIZE, VLLMBeamEngine
from conrec.model.backbone import align_prompt
from conrec.model.constrained import build_sid_trie


@pytest.fixture(scope="module")
def vllm_engine(config, trie) -> VLLMBeamEngine:
    return VLLMBeamEngine(config, trie)


@pytest.fixture(scope="module")
def hf_engine(config, trie) -> HFBeamEngine:
    return HFBeamEngine(config, trie)


def test_vllm_and_hf_return_the_same_top20(vllm_engine, hf_engine, tiny, assert_same_topk):
    # Six prompts with batch_size 4: also covers a partial last batch.
    prompts = tiny.prompts(6, seed=3)
    from_vllm = vllm_engine.generate_topk(prompts, 20)
    from_hf = hf_engine.generate_topk(prompts, 20)
    catalogue = set(tiny.sids)
    assert len(from_vllm) == len(prompts)
    for got, expected in zip(from_vllm, from_hf, strict=True):
        assert len(got) == 20
        assert {sid for sid, _ in got} <= catalogue
        assert_same_topk(got, expected)


def test_whole_block_prompts_agree_cold_and_from_the_prefix_cache(
    vllm_engine, hf_engine, tiny, assert_same_topk
):
    # As the batch job sends them: fill tokens in front, to whole KV blocks. The second search
    # finds every prompt's blocks cached, so its first level computes only the last token.
    prompts = [
        align_prompt(tiny.tokenizer, tiny.prompts(1, length=n, seed=n)[0], PREFIX_BLOCK_SIZE)
        for n in (40, 61, 75, 96)
    ]
    assert [len(ids) for ids in encode_prompts(tiny.tokenizer, prompts)] == [64, 64, 96, 96]
    from_hf = hf_engine.generate_topk(prompts, 20)
    for _ in range(2):
        for got, expected in zip(vllm_engine.generate_topk(prompts, 20), from_hf, strict=True):
            assert_same_topk(got, expected)


def test_vllm_beam_width_over_max_logprobs_is_refused(vllm_engine, tiny):
    with pytest.raises(ValueError, match="max_logprobs"):
        vllm_engine.generate_topk(tiny.prompts(1), vllm_engine.config.max_logprobs + 1)


def test_vllm_and_hf_agree_with_excluded_sids(vllm_engine, hf_engine, tiny, assert_same_topk):
    prompts = tiny.prompts(5, seed=5)
    best = hf_engine.generate_topk(prompts, 20)
    # Exclude each prompt's best two SIDs and, for the last, every SID under one prefix.
    exclude = [{sid for sid, _ in row[:2]} for row in best]
    exclude[-1] |= {sid for sid in tiny.sids if sid[:2] == best[-1][0][0][:2]}
    from_vllm = vllm_engine.generate_topk(prompts, 20, exclude=exclude)
    from_hf = hf_engine.generate_topk(prompts, 20, exclude=exclude)
    for got, expected, banned in zip(from_vllm, from_hf, exclude, strict=True):
        assert not banned & {sid for sid, _ in got}
        assert_same_topk(got, expected)


def test_beams_with_one_continuation_send_no_request(
    vllm_engine, hf_engine, tiny, monkeypatch, assert_same_topk
):
    # A catalogue whose SIDs all start differently: after the first level every beam has one
    # way on, so vLLM is asked once per prompt, and the scores still match the HF engine's.
    distinct = list({sid[0]: sid for sid in tiny.sids}.values())
    trie = build_sid_trie(distinct, tiny.tokenizer)
    for engine in (vllm_engine, hf_engine):
        monkeypatch.setattr(engine, "trie", trie)
    monkeypatch.setattr(vllm_engine, "_templates", {})  # they hold the allowed tokens
    core = vllm_engine.llm.llm_engine.engine_core
    sent = []
    add_request = core.add_request
    monkeypatch.setattr(core, "add_request", lambda request: (sent.append(1), add_request(request)))
    prompts = tiny.prompts(3, seed=7)
    k = min(20, len(distinct))
    from_vllm = vllm_engine.generate_topk(prompts, k)
    assert len(sent) == len(prompts)
    for got, expected in zip(from_vllm, hf_engine.generate_topk(prompts, k), strict=True):
        assert len(got) == k
        assert_same_topk(got, expected)
