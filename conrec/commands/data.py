"""`conrec data prepare`: a source into the prepared-tables folder every later step reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from conrec.commands.choices import DatasetName

app = typer.Typer(
    help="Load a source into the canonical items/events tables.", no_args_is_help=True
)
console = Console()

_MAPPING = "Mapping your own files (or override the dataset file's fields)"


@app.command()
def prepare(
    out: str = typer.Option("runs/data", help="The prepared-tables folder to write."),
    dataset: Annotated[
        DatasetName, typer.Option(help="A named dataset, when no files are mapped.")
    ] = DatasetName.ml100k,
    data_path: str | None = typer.Option(None, help="Folder (ml-100k) or file (kuairand)."),
    source: str | None = typer.Option(
        None, help="Dataset YAML file mapping your own files (see model/data/mapping.py)."
    ),
    events: str | None = typer.Option(
        None, help="Events CSV/TSV/Parquet.", rich_help_panel=_MAPPING
    ),
    items: str | None = typer.Option(None, help="Items CSV/TSV/Parquet.", rich_help_panel=_MAPPING),
    name: str | None = typer.Option(None, help="Dataset name.", rich_help_panel=_MAPPING),
    user_id: str | None = typer.Option(None, help="User id column.", rich_help_panel=_MAPPING),
    item_id: str | None = typer.Option(None, help="Item id column.", rich_help_panel=_MAPPING),
    items_item_id: str | None = typer.Option(
        None, help="Items file's item id column, if it differs.", rich_help_panel=_MAPPING
    ),
    ts: str | None = typer.Option(None, help="Timestamp column.", rich_help_panel=_MAPPING),
    ts_unit: str | None = typer.Option(None, help="s | ms | iso | auto.", rich_help_panel=_MAPPING),
    rating: str | None = typer.Option(None, help="Rating column.", rich_help_panel=_MAPPING),
    dislike_at_most: float | None = typer.Option(
        None, help="Rating <= this: dislike.", rich_help_panel=_MAPPING
    ),
    like_at_least: float | None = typer.Option(
        None, help="Rating >= this: like; the rest are exposures.", rich_help_panel=_MAPPING
    ),
    label: str | None = typer.Option(None, help="Feedback label column.", rich_help_panel=_MAPPING),
    label_values: str | None = typer.Option(
        None, help="e.g. hide=neg,like=pos,view=exposure", rich_help_panel=_MAPPING
    ),
    polarity: str | None = typer.Option(
        None, help="Column already holding neg|pos|exposure.", rich_help_panel=_MAPPING
    ),
    reason: str | None = typer.Option(
        None, help="Feedback reason column.", rich_help_panel=_MAPPING
    ),
    title: str | None = typer.Option(None, help="Item title column.", rich_help_panel=_MAPPING),
    category: str | None = typer.Option(
        None, help="Item category column.", rich_help_panel=_MAPPING
    ),
    category_sep: str | None = typer.Option(
        None, help="Separator of several categories, e.g. '|'.", rich_help_panel=_MAPPING
    ),
    text: Annotated[
        list[str] | None,
        typer.Option(help="More item columns to embed (repeatable).", rich_help_panel=_MAPPING),
    ] = None,
    sep: str | None = typer.Option(None, help="Field separator.", rich_help_panel=_MAPPING),
) -> None:
    """Load, validate and write items/events Parquet and report.json; print what was dropped."""
    from model.data.mapping import MappingError, load_mapping, mapping_from
    from model.data.prepared import prepare_mapped, summarize, write_tables
    from model.data.sources import load_dataset

    fields = {
        "events": events, "items": items, "name": name, "user_id": user_id, "item_id": item_id,
        "items_item_id": items_item_id, "ts": ts, "ts_unit": ts_unit, "rating": rating,
        "dislike_at_most": dislike_at_most, "like_at_least": like_at_least, "label": label,
        "label_values": _pairs(label_values) if label_values else None, "polarity": polarity,
        "reason": reason, "title": title, "category": category, "category_sep": category_sep,
        "text": text or None, "sep": sep,
    }  # fmt: skip
    try:
        if source or events:
            given = {k: v for k, v in fields.items() if v is not None}
            mapping = load_mapping(source, **given) if source else mapping_from(given)
            report = prepare_mapped(mapping, out)
        else:
            ds = load_dataset(dataset.value, data_path)
            write_tables(ds, out)
            report = ds.report
    except (MappingError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None

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
