"""`conrec data prepare`: a source into the prepared-tables folder every later step reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from conrec.cli.options import override_options
from conrec.model.data.mapping import SourceMapping
from conrec.model.data.sources import DatasetName

app = typer.Typer(
    help="Load a source into the canonical items/events tables.", no_args_is_help=True
)
console = Console()

_MAPPING = "Mapping your own files (or override the dataset file's fields)"


@app.command()
@override_options(SourceMapping, exclude=("label_values",), panel=_MAPPING)
def prepare(
    overrides: dict[str, Any],
    out: str = typer.Option("runs/data", help="The prepared-tables folder to write."),
    dataset: Annotated[
        DatasetName, typer.Option(help="A named dataset, when no files are mapped.")
    ] = "ml-100k",
    data_path: str | None = typer.Option(None, help="Folder (ml-100k) or file (kuairand)."),
    source: str | None = typer.Option(
        None, help="Dataset YAML file mapping your own files (see model/data/mapping.py)."
    ),
    label_values: str | None = typer.Option(
        None,
        help="Label value -> polarity pairs, comma-separated: hide=neg,like=pos,view=exposure.",
        rich_help_panel=_MAPPING,
    ),
) -> None:
    """Load, validate and write items/events Parquet and report.json; print what was dropped."""
    from conrec.model.data.mapping import load_mapping, mapping_from
    from conrec.model.data.prepared import prepare_mapped, write_tables
    from conrec.model.data.sources import load_dataset

    if label_values:
        overrides["label_values"] = _pairs(label_values)
    try:
        if source or overrides.get("events"):
            mapping = load_mapping(source, **overrides) if source else mapping_from(overrides)
            report = prepare_mapped(mapping, out)
        else:
            ds = load_dataset(dataset, data_path)
            write_tables(ds, out)
            report = ds.report
    except (FileNotFoundError, ValueError) as exc:  # ValueError: MappingError, ConfigError
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None

    from conrec.model.data.prepared import summarize

    table = Table(title=f"{report.source}: prepared tables in {Path(out)}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summarize(out).items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    console.print(report.summary())
    for reason_, shown in report.examples.items():
        console.print(f"  e.g. ({reason_}): {shown[0]}")


def _pairs(text: str) -> dict[str, str]:
    try:
        return dict(p.split("=", 1) for p in text.split(",") if p.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: expected value=polarity pairs, comma-separated"
        ) from None
