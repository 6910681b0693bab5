"""The prepared-tables folder: the one input of the codebook, training, evaluation and the batch.

Layout of a folder that `conrec data prepare` writes::

    items.parquet     canonical items (tables.ITEM_COLUMNS)
    events.parquet    canonical events (tables.EVENT_COLUMNS), sorted by (user_id, ts)
    report.json       the source, its mapping, rows read / kept / dropped by reason

A named dataset (ml-100k, KuaiRand) and a mapped platform log are all sources that write one;
with no folder given, commands read ml-100k's, prepared once into the cache.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from conrec.model.data.mapping import (
    SourceMapping,
    column_hints,
    map_events,
    map_items,
    require_columns,
)
from conrec.model.data.readers import columns_of, iter_chunks, read_table
from conrec.model.data.sources import DataTables, load_ml100k
from conrec.model.data.tables import (
    LoadReport,
    drop_non_interest_negatives,
    validate_events,
    validate_items,
)
from conrec.model.pypi import cache_dir

log = logging.getLogger(__name__)

ITEMS_FILE = "items.parquet"
EVENTS_FILE = "events.parquet"
REPORT_FILE = "report.json"
EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("ts", pa.int64()),
        ("polarity", pa.string()),
        ("reason", pa.string()),
    ]
)


def is_prepared(folder: str | Path) -> bool:
    return all((Path(folder) / f).is_file() for f in (ITEMS_FILE, EVENTS_FILE))


def load_tables(data: str | Path | None = None) -> DataTables:
    """The canonical tables of a prepared folder; None: ml-100k's, prepared on first use."""
    if data is None:
        data = cache_dir() / "tables" / "ml-100k"
        if not is_prepared(data):
            write_tables(load_ml100k(), data)
    folder = Path(data)
    if not is_prepared(folder):
        raise FileNotFoundError(
            f"{folder} is not a prepared-tables folder (no {ITEMS_FILE} / {EVENTS_FILE}); "
            f"write one with `conrec data prepare --out {folder}`"
        )
    meta = read_report(folder)
    report = LoadReport(meta.get("source", folder.name))
    report.rows_read, report.rows_kept = meta.get("rows_read", 0), meta.get("rows_kept", 0)
    return DataTables(
        meta.get("name", folder.name),
        pd.read_parquet(folder / ITEMS_FILE),
        pd.read_parquet(folder / EVENTS_FILE),
        report,
    )


def write_tables(ds: DataTables, out: str | Path, source: dict[str, Any] | None = None) -> Path:
    """Write a loaded source's tables and report into a prepared folder."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    ds.items.to_parquet(folder / ITEMS_FILE, index=False)
    events = pa.Table.from_pandas(ds.events, schema=EVENT_SCHEMA, preserve_index=False)
    pq.write_table(events, folder / EVENTS_FILE)
    _write_report(folder, ds.name, ds.report, source or {"dataset": ds.name})
    return folder


def prepare_mapped(mapping: SourceMapping, out: str | Path, progress: bool = True) -> LoadReport:
    """Read a platform's files through `mapping`, a chunk at a time, into a prepared folder.

    Each chunk is mapped and validated on its own and kept as Arrow columns; the full events
    table is sorted once, in Arrow, and written. Returns what was kept and dropped.
    """
    started = time.perf_counter()
    report = LoadReport(mapping.dataset_name)
    hints = column_hints(mapping)
    require_columns(
        columns_of(mapping.events, mapping.sep), mapping.event_columns(), mapping.events, hints
    )
    items = None
    if mapping.items:
        require_columns(
            columns_of(mapping.items, mapping.sep), mapping.item_columns(), mapping.items, hints
        )
        raw = read_table(mapping.items, mapping.item_columns(), mapping.sep)
        items = validate_items(map_items(raw, mapping), LoadReport("items"))
    known = set(items["item_id"]) if items is not None else None

    parts: list[pa.Table] = []
    seen_items: set[str] = set()
    chunks = iter_chunks(mapping.events, mapping.event_columns(), mapping.sep)
    for chunk in tqdm(chunks, desc=f"prepare {report.source}", unit="chunk", disable=not progress):
        events = validate_events(map_events(chunk, mapping), report, known, sort=False)
        events = drop_non_interest_negatives(events, report)
        if known is None:
            seen_items.update(events["item_id"].unique().tolist())
        parts.append(pa.Table.from_pandas(events, schema=EVENT_SCHEMA, preserve_index=False))
    table = pa.concat_tables(parts) if parts else EVENT_SCHEMA.empty_table()
    del parts
    table = table.sort_by([("user_id", "ascending"), ("ts", "ascending")])
    if items is None:
        items = validate_items(untitled_items(sorted(seen_items)), LoadReport("items"))

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    items.to_parquet(folder / ITEMS_FILE, index=False)
    pq.write_table(table, folder / EVENTS_FILE)
    _write_report(folder, report.source, report, {"mapping": mapping.to_dict()})
    log.info("%s in %.1f s", report.summary(), time.perf_counter() - started)
    return report


def summarize(folder: str | Path) -> dict[str, Any]:
    """Counts of a prepared folder, read column by column (a large log stays in Arrow)."""
    folder = Path(folder)
    events = pq.read_table(folder / EVENTS_FILE, columns=["user_id", "ts", "polarity"])
    polarity = events["polarity"].value_counts().to_pylist()
    ts = events["ts"]
    return {
        "items": pq.ParquetFile(folder / ITEMS_FILE).metadata.num_rows,
        "users": pc.count_distinct(events["user_id"]).as_py(),
        "events": events.num_rows,
        **{f"{p['values']} events": p["counts"] for p in polarity},
        "first event": _date(pc.min(ts).as_py()),
        "last event": _date(pc.max(ts).as_py()),
    }


def _date(ts: int | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def untitled_items(item_ids: list[str]) -> pd.DataFrame:
    # Without an items file an item is known by its id only; it can still get a SID.
    return pd.DataFrame({"item_id": item_ids, "title": [f"item {i}" for i in item_ids]})


def read_report(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / REPORT_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_report(folder: Path, name: str, report: LoadReport, source: dict[str, Any]) -> None:
    payload = {
        "name": name,
        "source": report.source,
        **source,
        "rows_read": report.rows_read,
        "rows_kept": report.rows_kept,
        "dropped": dict(report.dropped),
        "examples": report.examples,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (folder / REPORT_FILE).write_text(json.dumps(payload, indent=2, default=str))
