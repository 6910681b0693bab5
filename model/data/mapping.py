"""A platform's own files mapped onto the canonical tables: which column is which, how a row's
feedback becomes a polarity, what unit its timestamps are in and which columns describe an item.

The same field names work in a dataset YAML file and as `conrec data prepare` options:

    events: ratings.csv          # CSV, TSV or Parquet; relative paths are from the YAML file
    items: movies.csv            # optional: without it items are the events' ids, untitled
    user_id: userId
    item_id: movieId
    ts: timestamp
    ts_unit: s                   # s | ms | iso | auto
    rating: rating               # polarity from a rating with thresholds ...
    dislike_at_most: 2
    like_at_least: 4             # ... the rest are exposures
    title: title
    category: genres
    category_sep: "|"

or, for an explicit feedback column, `label: action` with
`label_values: {hide: neg, like: pos, view: exposure}` (other values are counted as bad rows).
"""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from conrec.model.data.tables import CATEGORY_SEPARATOR, Polarity
from conrec.model.yaml_config import from_dict, load_yaml

log = logging.getLogger(__name__)

TsUnit = Literal["s", "ms", "iso", "auto"]
TS_UNITS: tuple[TsUnit, ...] = typing.get_args(TsUnit)
# Unix seconds pass 1e11 in the year 5138; milliseconds passed it in 1973.
_MS_FROM = 1e11


class MappingError(ValueError):
    """A source cannot be mapped; the message says what is missing and how to map it."""


@dataclass
class SourceMapping:
    """How one platform's files become the canonical items and events tables."""

    events: str = field(metadata={"help": "Events file: CSV, TSV or Parquet.", "path": True})
    items: str | None = field(
        default=None,
        metadata={"help": "Items file; without it items are untitled ids.", "path": True},
    )
    name: str | None = field(default=None, metadata={"help": "Dataset name for reports."})
    user_id: str = field(default="user_id", metadata={"help": "Events column of the user id."})
    item_id: str = field(default="item_id", metadata={"help": "Column of the item id."})
    items_item_id: str | None = field(
        default=None, metadata={"help": "Items column of the item id, if it differs."}
    )
    ts: str = field(default="ts", metadata={"help": "Events column of the timestamp."})
    ts_unit: TsUnit = field(
        default="s",
        metadata={"help": "Unit of the timestamps: seconds, milliseconds, ISO 8601 text, or "
                  "auto (told apart by their magnitude)."},
    )  # fmt: skip
    label: str | None = field(
        default=None, metadata={"help": "Column of an explicit feedback label."}
    )
    label_values: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Label value -> neg | pos | exposure."}
    )
    rating: str | None = field(default=None, metadata={"help": "Column of a numeric rating."})
    dislike_at_most: float | None = field(
        default=None, metadata={"help": "A rating <= this is a dislike (neg)."}
    )
    like_at_least: float | None = field(
        default=None, metadata={"help": "A rating >= this is a like (pos); the rest exposure."}
    )
    polarity: str | None = field(
        default=None, metadata={"help": "Column already holding neg | pos | exposure."}
    )
    reason: str | None = field(default=None, metadata={"help": "Column of a feedback reason."})
    title: str | None = field(default=None, metadata={"help": "Items column of the title."})
    category: str | None = field(default=None, metadata={"help": "Items column of the categories."})
    category_sep: str | None = field(
        default=None, metadata={"help": "Separator of several categories in one cell."}
    )
    text: list[str] = field(
        default_factory=list, metadata={"help": "More items columns for the embedded text."}
    )
    sep: str | None = field(
        default=None, metadata={"help": "Field separator; default from the suffix."}
    )

    def __post_init__(self) -> None:
        if self.ts_unit not in TS_UNITS:
            raise MappingError(f"ts_unit must be one of {TS_UNITS}, not {self.ts_unit!r}")
        given = [k for k in ("label", "rating", "polarity") if getattr(self, k)]
        if len(given) != 1:
            raise MappingError(
                "say how a row becomes a dislike with exactly one of: rating (with "
                "dislike_at_most / like_at_least), label (with label_values) or polarity"
                + (f"; got {given}" if given else "")
            )
        if self.rating and self.dislike_at_most is None:
            raise MappingError("a rating column needs dislike_at_most (e.g. 2 on a 1-5 scale)")
        if self.label:
            bad = {v for v in self.label_values.values() if v not in set(Polarity)}
            if not self.label_values or bad:
                raise MappingError(
                    "label_values must map each label value to neg, pos or exposure"
                    + (f"; not {sorted(bad)}" if bad else "")
                )

    @property
    def dataset_name(self) -> str:
        return self.name or Path(self.events).stem

    def event_columns(self) -> list[str]:
        wanted = [self.user_id, self.item_id, self.ts, self.label, self.rating, self.polarity]
        return list(dict.fromkeys(c for c in [*wanted, self.reason] if c))

    def item_columns(self) -> list[str]:
        wanted = [self.items_item_id or self.item_id, self.title, self.category, *self.text]
        return list(dict.fromkeys(c for c in wanted if c))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load_mapping(path: str | Path, **overrides: Any) -> SourceMapping:
    """A dataset YAML file, with command-line overrides; file paths resolve from its folder."""
    return load_yaml(SourceMapping, path, **overrides)


def mapping_from(raw: dict[str, Any]) -> SourceMapping:
    """A mapping given as options (no file)."""
    return from_dict(SourceMapping, raw, where="options")


def require_columns(
    present: list[str], wanted: list[str], path: str | Path, hint: dict[str, str]
) -> None:
    """One line naming each missing column, the file's own columns and the field that maps it."""
    missing = [c for c in wanted if c not in present]
    if missing:
        fields_ = [hint[c] for c in missing if c in hint]
        options = ", ".join(f"--{f.replace('_', '-')} COLUMN" for f in fields_)
        keys = ", ".join(f"{f}:" for f in fields_)
        raise MappingError(
            f"{Path(path).name} has no column {', '.join(map(repr, missing))} (its columns: "
            f"{', '.join(repr(c) for c in present)}); name the right ones with {options} "
            f"(or {keys} in a dataset file)"
        )


_COLUMN_FIELDS = (
    "user_id", "item_id", "items_item_id", "ts", "label", "rating", "polarity", "reason",
    "title", "category",
)  # fmt: skip


def column_hints(mapping: SourceMapping) -> dict[str, str]:
    """Column name -> the field that names it, for error messages."""
    named = {getattr(mapping, f): f for f in _COLUMN_FIELDS if getattr(mapping, f)}
    return named | {c: "text" for c in mapping.text}


def map_events(chunk: pd.DataFrame, mapping: SourceMapping) -> pd.DataFrame:
    """A chunk of the events file (string columns) as canonical events, not yet validated:
    unusable cells become values that validation counts (NaN timestamps, `invalid` polarity)."""
    return pd.DataFrame(
        {
            "user_id": chunk[mapping.user_id],
            "item_id": chunk[mapping.item_id],
            "ts": timestamps_in_seconds(chunk[mapping.ts], mapping),
            "polarity": polarity_of(chunk, mapping),
            "reason": chunk[mapping.reason] if mapping.reason else "",
        }
    )


def polarity_of(chunk: pd.DataFrame, mapping: SourceMapping) -> pd.Series:
    if mapping.polarity:
        return chunk[mapping.polarity]
    if mapping.label:
        label = chunk[mapping.label].astype(str).str.strip()
        return label.map(mapping.label_values).fillna("invalid label")
    rating = pd.to_numeric(chunk[mapping.rating], errors="coerce")
    pol = np.full(len(rating), "invalid rating", dtype=object)
    pol[rating.notna().to_numpy()] = Polarity.EXPOSURE.value
    pol[(rating <= mapping.dislike_at_most).to_numpy()] = Polarity.NEG.value
    if mapping.like_at_least is not None:
        pol[(rating >= mapping.like_at_least).to_numpy()] = Polarity.POS.value
    return pd.Series(pol, index=chunk.index)


def timestamps_in_seconds(raw: pd.Series, mapping: SourceMapping) -> pd.Series:
    """Unix seconds as floats; NaN where a cell is not a timestamp (validation counts those)."""
    if mapping.ts_unit == "auto":
        mapping.ts_unit = detect_ts_unit(raw)
        log.info("timestamps in column %r read as %s (ts_unit: auto)", mapping.ts, mapping.ts_unit)
    if mapping.ts_unit == "iso":
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        return seconds.astype("float64")
    numeric = pd.to_numeric(raw, errors="coerce")
    return numeric // 1000 if mapping.ts_unit == "ms" else numeric


def detect_ts_unit(raw: pd.Series) -> str:
    sample = raw.dropna().head(1000)
    numeric = pd.to_numeric(sample, errors="coerce")
    if numeric.notna().mean() < 0.5:
        return "iso"
    return "ms" if float(numeric.median()) >= _MS_FROM else "s"


def map_items(raw: pd.DataFrame, mapping: SourceMapping) -> pd.DataFrame:
    """The items file as canonical items: categories split on the source's separator and stored
    `, `-joined, the one way the rest of the code reads them (`tables.categories_of`)."""
    category = raw[mapping.category].astype(str) if mapping.category else pd.Series("", raw.index)
    if mapping.category and mapping.category_sep:
        parts = category.str.split(mapping.category_sep, regex=False)
        category = parts.map(lambda cs: CATEGORY_SEPARATOR.join(c.strip() for c in cs if c.strip()))
    text = pd.Series("", index=raw.index)
    for col in mapping.text:
        cell = raw[col].astype(str).str.strip()
        text = text.str.cat(cell, sep=". ").str.strip(". ")
    return pd.DataFrame(
        {
            "item_id": raw[mapping.items_item_id or mapping.item_id],
            "title": raw[mapping.title] if mapping.title else "",
            "category": category,
            "text": text,
        }
    )
