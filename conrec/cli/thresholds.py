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
    from conrec.service.core.thresholds import OTHER, ThresholdsError, parse_thresholds

    try:
        thresholds = parse_thresholds(file.read_bytes())
    except (OSError, ThresholdsError) as exc:
        reason = f"cannot read it: {exc.strerror or exc}" if isinstance(exc, OSError) else exc
        message = escape(f"{file}: {reason}")  # pydantic's locations hold [brackets]
        errors.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    table = Table(title=f"{file}: version {thresholds.version}")
    for column in ("surface", "score", "threshold", "mode", "max drop share", "holdout", "logged"):
        table.add_column(column)
    fallback = (f"{OTHER} (any other, or none)", thresholds.fallback)
    policies = [*thresholds.surfaces.items(), fallback]
    for name, p in policies:
        table.add_row(name, p.score, f"{p.threshold:g}", p.mode, f"{p.max_drop_share:g}",
                      f"{p.holdout:g}", f"{p.log_sample:g}")  # fmt: skip
    console.print(table)
    for score in sorted({p.score for _, p in policies}):
        bounds = thresholds.bounds(score)
        console.print(
            f"a request's own threshold on a {score} surface must lie in "
            f"[{bounds.min:g}, {bounds.max:g}]"
        )
