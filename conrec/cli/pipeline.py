"""`conrec pipeline run FILE`: prepare -> codebook -> train -> evaluate -> batch, as a file says."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Run the steps a pipeline file names.", no_args_is_help=True)
console = Console()


@app.command()
def run(
    file: str = typer.Argument(..., help="Pipeline YAML (see conrec/pipeline.py)."),
    force: Annotated[
        list[str] | None, typer.Option(help="Run this step even if its inputs are unchanged.")
    ] = None,
    dry_run: bool = typer.Option(False, help="Only say which steps would run."),
) -> None:
    """Run the file's steps in order; a step whose inputs did not change is skipped."""
    from conrec.pipeline import Pipeline, load_pipeline

    try:
        pipeline = Pipeline(load_pipeline(file))
        results = pipeline.run(tuple(force or ()), dry_run=dry_run)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table(title=f"pipeline {file}: {pipeline.run_dir}")
    for column in ("step", "status", "seconds", "inputs"):
        table.add_column(column)
    for r in results:
        table.add_row(r.step, r.status, f"{r.seconds:.1f}", r.fingerprint[:12])
    console.print(table)
