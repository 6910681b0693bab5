"""SmolLM2's SFT step in bf16 autocast against fp32, on this machine: samples per second of the
next-negative (warm-up) stage as `smollm2-ml100k.yaml` sets it (batch 16, up to 128 tokens; the
longest SFT stage of the curriculum), Trainer time only, the same samples and seed in both.

`precision: bf16` (model/configs/smollm2-ml100k.yaml) could pay off on a CPU only where it has
native bf16 instructions (AMX or AVX512-BF16); the line `cpu_bf16:` says whether this one has, from
/proc/cpuinfo. The two precisions run interleaved, twice each, and the best of each is kept (the
machine is shared: other load only adds time). Run with
`pytest -m benchmark tests/benchmarks/test_train_precision.py -s`; see docs/benchmarks.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conrec.model import tasks
from conrec.model.backbone import load_backbone, load_backbone_tokenizer
from conrec.model.pretrained import SMOLLM2, hf_checkpoint
from conrec.model.sft import SFTStageConfig, run_sft_stage
from conrec.model.stages import LoraSettings

pytestmark = pytest.mark.benchmark

STEPS, BATCH, REPEATS = 6, 16, 2


def _cpu_bf16() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.is_file() else set()
    return ",".join(sorted(flags & {"amx_bf16", "avx512_bf16"})) or "none"


def test_train_bf16_vs_fp32(tmp_path, artifact_dir, ml100k):
    from conrec.codebook.artifact import load_codebook, load_item_sids
    from conrec.model.data.splits import midpoint_cutoffs, training_cutoffs, user_windows

    folder, _ = hf_checkpoint(SMOLLM2)
    codebook = load_codebook(artifact_dir)
    tokenizer = load_backbone_tokenizer(folder, codebook.levels, codebook.size)
    events = ml100k.events
    windows = user_windows(events, training_cutoffs(events, midpoint_cutoffs(events), 8))
    samples = tasks.next_negative_samples(windows, load_item_sids(artifact_dir))[: STEPS * BATCH]
    cfg = SFTStageConfig(max_steps=STEPS, batch_size=BATCH, max_length=128, save_steps=10 * STEPS)
    lora = LoraSettings(r=16, alpha=32)
    best: dict[str, float] = {}
    for attempt in range(REPEATS):
        for precision in ("fp32", "bf16"):
            _, metrics = run_sft_stage(
                load_backbone(folder, tokenizer), tokenizer, samples,
                tmp_path / f"{precision}-{attempt}", cfg, lora, precision=precision,
            )  # fmt: skip
            assert metrics["precision"] == precision
            best[precision] = max(best.get(precision, 0.0), STEPS * BATCH / metrics["seconds"])
    print(f"\ncpu_bf16: {_cpu_bf16()}")
    print(f"SmolLM2 next-negative SFT samples/s: fp32 {best['fp32']:.1f}, bf16 {best['bf16']:.1f}")
    print(f"train_bf16_vs_fp32: {best['bf16'] / best['fp32']:.2f}")
