"""`--engine auto` resolves to the engine the benchmark measured faster on the hardware."""

import inspect

import pytest
import torch

from batch_gen.engines.hf import HFBeamEngine
from batch_gen.nightly import ENGINES, NightlyConfig, make_engine, resolve_engine
from conrec.commands.batch import batch_gen
from conrec.commands.choices import Engine


def test_auto_is_vllm_with_a_cuda_gpu_and_hf_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_engine("auto") == "vllm"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_engine("auto") == "hf"


def test_explicit_engines_are_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_engine("hf") == "hf"
    assert resolve_engine("vllm") == "vllm"


@pytest.mark.skipif(torch.cuda.is_available(), reason="documents the CPU choice")
def test_auto_builds_the_hf_engine_on_this_cpu_machine(config, trie):
    assert isinstance(make_engine("auto", config, trie), HFBeamEngine)


def test_auto_is_the_default_of_batch_gen_and_the_nightly_config():
    assert {e.value for e in Engine} == set(ENGINES)
    assert inspect.signature(batch_gen).parameters["engine"].default == Engine.auto
    engine_field = NightlyConfig.__dataclass_fields__["engine"]
    assert engine_field.default == "auto"


def test_unknown_engines_are_refused(config, trie):
    with pytest.raises(ValueError, match="engine must be one of"):
        make_engine("tpu", config, trie)
