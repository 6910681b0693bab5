"""Reading CSV, TSV and Parquet files a chunk at a time with pyarrow.

Only the columns asked for are read, as strings (Parquet keeps its own types), and only one
chunk is ever held as a pandas frame: a log of tens of millions of events is never held as
Python strings in full.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PARQUET_SUFFIXES = {".parquet", ".pq"}
TSV_SUFFIXES = {".tsv", ".tab"}
CHUNK_BYTES = 64 << 20


def separator_of(path: str | Path, sep: str | None = None) -> str:
    if sep:
        return sep
    return "\t" if Path(path).suffix.lower() in TSV_SUFFIXES else ","


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def columns_of(path: str | Path, sep: str | None = None) -> list[str]:
    """The file's column names, read from its header (CSV/TSV) or schema (Parquet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if is_parquet(path):
        return list(pq.ParquetFile(path).schema_arrow.names)
    with pacsv.open_csv(path, **_csv_options(path, sep, None)) as reader:
        return list(reader.schema.names)


def iter_chunks(
    path: str | Path, columns: list[str], sep: str | None = None
) -> Iterator[pd.DataFrame]:
    """The named columns of the file, in chunks of up to ~64 MB of text, as pandas frames."""
    if is_parquet(path):
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=1_000_000, columns=columns):
            yield _as_strings(batch).to_pandas()
        return
    with pacsv.open_csv(path, **_csv_options(path, sep, columns)) as reader:
        for batch in reader:
            yield batch.to_pandas()


def read_table(path: str | Path, columns: list[str], sep: str | None = None) -> pd.DataFrame:
    """The named columns of a small file (an items table) in one frame."""
    chunks = list(iter_chunks(path, columns, sep))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=columns)


def _csv_options(path: str | Path, sep: str | None, columns: list[str] | None) -> dict:
    convert = pacsv.ConvertOptions(
        include_columns=columns,
        column_types=dict.fromkeys(columns, pa.string()) if columns else None,
        strings_can_be_null=False,
    )
    return {
        "read_options": pacsv.ReadOptions(block_size=CHUNK_BYTES),
        "parse_options": pacsv.ParseOptions(delimiter=separator_of(path, sep)),
        "convert_options": convert,
    }


def _as_strings(batch: pa.RecordBatch) -> pa.RecordBatch:
    # Ids stored as integers in Parquet must read the same as the same ids in a CSV.
    arrays = [a if pa.types.is_string(a.type) else a.cast(pa.string()) for a in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
