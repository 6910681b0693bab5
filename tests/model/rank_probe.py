"""Run under `torchrun --nproc_per_node 2`: each GRPO stage of a curriculum config, trained
data-parallel, with a weight-0 reward that records which windows each rank was handed.

Writes `<out>/rank<r>.json`: per stage, the windows this rank rewarded, the windows the stage
drew, and which of `range(10)` `conrec.model.distributed.shard` gave this rank.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conrec.model import distributed
from conrec.model.curriculum import CurriculumRun
from conrec.model.data.prepared import load_tables
from conrec.model.train_config import load_config


def main(config: str, out: str) -> None:
    cfg = load_config(config)
    run = CurriculumRun(cfg, load_tables(cfg.data))
    seen: list[str] = []

    def window_recorder(prompts, completions, window, **_):
        seen.extend(window)
        return [0.0] * len(prompts)

    run.rewards.append((window_recorder, 0.0))
    model = run.initial_model()
    stages = {}
    for stage in run.stages:
        if stage.kind != "grpo":
            continue
        drawn = [s["window"] for s in run.samples(stage, model)[0]]
        seen.clear()
        model, metrics = run.train(stage, model)
        stages[stage.label] = {"rewarded": sorted(set(seen)), "drawn": drawn, "metrics": metrics}
    record = {"stages": stages, "shard": distributed.shard(range(10))}
    Path(out, f"rank{distributed.rank()}.json").write_text(json.dumps(record, default=str))
    distributed.finish()


if __name__ == "__main__":
    main(*sys.argv[1:])
