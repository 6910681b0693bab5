"""Curriculum training on 1 and 2 processes of this machine: samples per second of the
translation stage (Trainer time only, not start-up), the same global batch on both.

Both runs start as a user starts them (`accelerate launch --config_file
model/configs/accelerate/ddp.yaml --num_processes N conrec train CONFIG`), interleaved, three
times each, and the best of each is kept (the machine is shared: other load only adds time).
On a 2-core machine two processes share the same cores one process already uses, so a figure
near 1.0 is what to expect; the ratio grows with cores or GPUs per process. Run with
`pytest -m benchmark tests/benchmarks/test_train_ddp.py -s`; see docs/benchmarks.md.
CONREC_BENCH_LAUNCH_CONFIG and CONREC_BENCH_PROCESSES (e.g. `1,8`) change the launch config and
the process counts compared (tests/benchmarks/gpu_train_fsdp.sh: FSDP on a GPU machine).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from conrec.model.train_config import load_config
from tests.launch_support import DDP_CONFIG, ROOT, accelerate_train, finished, write_config

pytestmark = pytest.mark.benchmark

STEPS, BATCH, REPEATS = 120, 32, 3
LAUNCH_CONFIG = Path(os.environ.get("CONREC_BENCH_LAUNCH_CONFIG", str(DDP_CONFIG)))
PROCESSES = [int(n) for n in os.environ.get("CONREC_BENCH_PROCESSES", "1,2").split(",")]


def test_train_ddp2_vs_single(tmp_path, artifact_dir, ml100k_tables):
    base = load_config(
        ROOT / "model" / "configs" / "tiny-ml100k.yaml",
        codebook_dir=str(artifact_dir),
        data=str(ml100k_tables),
    )
    best: dict[int, float] = {}
    for attempt in range(REPEATS):
        for processes in PROCESSES:
            name = f"p{processes}-{attempt}"
            cfg = dataclasses.replace(
                base, use_alignment=False, grpo=[], output_dir=str(tmp_path / name),
                translation=dataclasses.replace(
                    base.translation, max_steps=STEPS, batch_size=BATCH, save_steps=10 * STEPS
                ),
                warmup=dataclasses.replace(base.warmup, max_steps=2),
            )  # fmt: skip
            log = tmp_path / f"{name}.log"
            finished(
                accelerate_train(write_config(cfg, tmp_path / f"{name}.yaml"), log, processes), log
            )
            stage = json.loads(Path(cfg.output_dir, "summary.json").read_text())["stages"]
            rate = STEPS * BATCH / stage["1_translation"]["seconds"]
            best[processes] = max(best.get(processes, 0.0), rate)
    one, many = PROCESSES[0], PROCESSES[-1]
    rates = ", ".join(f"{n} process{'es' if n > 1 else ''} {best[n]:.0f}" for n in PROCESSES)
    print(f"\n{LAUNCH_CONFIG.name}: translation samples/s: {rates}")
    kind = "ddp" if LAUNCH_CONFIG == DDP_CONFIG else LAUNCH_CONFIG.stem
    print(f"train_{kind}{many}_vs_{'single' if one == 1 else one}: {best[many] / best[one]:.2f}")
