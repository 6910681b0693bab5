"""`conrec data ...`: load a source into the canonical tables and show what was kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from conrec.commands.choices import Source

app = typer.Typer(
    help="Load datasets into the canonical items/events tables.", no_args_is_help=True
)
console = Console()


@app.command()
def prepare(
    dataset: Annotated[Source, typer.Option(help="The source to load.")] = Source.ml100k,
    data_path: str | None = typer.Option(None, help="Folder (ml-100k) or file (kuairand)."),
    items: str | None = typer.Option(None, help="generic: items CSV/Parquet."),
    events: str | None = typer.Option(None, help="generic: events CSV/Parquet."),
    out: str = typer.Option("runs/data", help="Where items.parquet and events.parquet go."),
) -> None:
    """Load, validate and write the canonical tables; print the bad-row report and split stats."""
    from model.data.sources import load_dataset, load_generic
    from model.data.splits import midpoint_cutoffs, user_windows

    if dataset is Source.generic:
        if not (items and events):
            raise typer.BadParameter("generic needs --items and --events")
        ds = load_generic(items, events)
    else:
        ds = load_dataset(dataset.value, data_path)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds.items.to_parquet(out_dir / "items.parquet", index=False)
    ds.events.to_parquet(out_dir / "events.parquet", index=False)

    windows = list(user_windows(ds.events, midpoint_cutoffs(ds.events)))
    table = Table(title=f"{ds.name}: canonical tables in {out_dir}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    counts = ds.events["polarity"].value_counts()
    rows = [
        ("items", len(ds.items)),
        ("users", ds.events["user_id"].nunique()),
        *((f"{pol} events", int(n)) for pol, n in counts.items()),
        ("rows dropped", ds.report.rows_dropped),
        (
            "users with a future-7d negative (midpoint cutoff)",
            sum(bool(w.future_negatives) for w in windows),
        ),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    console.print(ds.report.summary())
