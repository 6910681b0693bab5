"""`conrec thresholds check FILE`: validate the filter service's thresholds file before it
ships, with the parser the service's hot reload uses, and without loading torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="The filter service's thresholds file.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


@app.command()
def check(file: Annotated[Path, typer.Argument(help="The thresholds YAML file.")]) -> None:
    """Exit 0 and show the config the service would apply, or exit 2 and say what is wrong."""
    from service.core.thresholds import OTHER, ThresholdsError, parse_thresholds

    try:
        thresholds = parse_thresholds(file.read_bytes())
    except (OSError, ThresholdsError) as exc:
        reason = f"cannot read it: {exc.strerror or exc}" if isinstance(exc, OSError) else exc
        message = escape(f"{file}: {reason}")  # pydantic's locations hold [brackets]
        errors.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    table = Table(title=f"{file}: version {thresholds.version}")
    for column in ("surface", "threshold", "mode"):
        table.add_column(column)
    for name, surface in thresholds.surfaces.items():
        table.add_row(name, f"{surface.threshold:g}", surface.mode)
    table.add_row(f"{OTHER} (any other, or none)", f"{thresholds.default:g}", thresholds.mode)
    console.print(table)
    bounds = thresholds.override_range
    console.print(f"a request's own threshold must lie in [{bounds.min:g}, {bounds.max:g}]")
