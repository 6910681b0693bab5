"""The vLLM internals the beam engine builds its requests with are still there; an upgrade that
removes them fails here with the installed version's name. (The beam engine's own tests run
them for real: `test_vllm_parity.py`.)"""

from __future__ import annotations

import inspect

import pytest
import vllm

from conrec.batch_gen.engines.vllm_internals import VLLM_TESTED, VLLMChanged, engine_request


def test_the_request_builders_exist_with_the_arguments_used() -> None:
    from vllm import LLM
    from vllm.v1.engine.input_processor import InputProcessor

    upgrade = f"vLLM {vllm.__version__} (vllm_internals.py was written for {VLLM_TESTED})"
    assert hasattr(LLM, "_preprocess_cmpl"), f"{upgrade} has no LLM._preprocess_cmpl"
    parameters = inspect.signature(InputProcessor.process_inputs).parameters
    assert "supported_tasks" in parameters, f"{upgrade}: process_inputs takes {list(parameters)}"


def test_a_changed_internal_is_one_clear_error() -> None:
    class Older:  # an LLM without the internal
        pass

    with pytest.raises(VLLMChanged, match=f"written for {VLLM_TESTED}"):
        engine_request(Older(), "r", [1, 2], None, None)
