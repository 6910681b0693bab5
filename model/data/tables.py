"""The canonical `items` and `events` tables and their validation.

Every source adapter produces these two pandas DataFrames; everything downstream reads only
these columns. Validation never raises on a bad row and never keeps one silently: it drops the
row and counts it, by reason, in a `LoadReport` that the caller prints.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

ITEM_COLUMNS = ("item_id", "title", "category", "text")
EVENT_COLUMNS = ("user_id", "item_id", "ts", "polarity", "reason")
DAY_SECONDS = 86_400


class Polarity(StrEnum):
    NEG = "neg"
    POS = "pos"
    EXPOSURE = "exposure"


# Paper appendix B.1: negative feedback that is not about the user's interest (repeats, item
# quality, clickbait) belongs to fatigue/quality rules, not to a model of negative interest.
NON_INTEREST_REASONS = frozenset(
    {
        "seen_or_bought",
        "ai_generated_image",
        "low_price_clickbait",
        "counterfeit",
    }
)


@dataclass
class LoadReport:
    """What a load kept and what it dropped, by reason, with a few example rows per reason."""

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        self.dropped[reason] += len(rows)
        shown = self.examples.setdefault(reason, [])
        for rec in rows.head(3 - len(shown)).to_dict("records"):
            shown.append(str(rec))

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        parts = [f"{self.source}: read {self.rows_read}, kept {self.rows_kept}"]
        parts += [f"dropped {n} ({reason})" for reason, n in sorted(self.dropped.items())]
        return ", ".join(parts)


def validate_items(raw: pd.DataFrame, report: LoadReport) -> pd.DataFrame:
    """Coerce to ITEM_COLUMNS; drop (and count) rows with empty ids and duplicate ids."""
    df = raw.copy()
    for col in ITEM_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    df = df[list(ITEM_COLUMNS)]
    df["item_id"] = _clean_id(df["item_id"])
    for col in ("title", "category", "text"):
        df[col] = df[col].fillna("").astype(str).str.strip()
    empty = df["item_id"] == ""
    report.drop("empty item_id", df[empty])
    df = df[~empty]
    dup = df["item_id"].duplicated(keep="first")
    report.drop("duplicate item_id", df[dup])
    return df[~dup].reset_index(drop=True)


def validate_events(
    raw: pd.DataFrame,
    report: LoadReport,
    known_items: set[str] | None = None,
    *,
    sort: bool = True,
) -> pd.DataFrame:
    """Coerce to EVENT_COLUMNS, sorted by (user_id, ts) unless `sort` is False (a chunk of a
    log that is sorted once in full); bad rows are dropped and counted."""
    report.rows_read += len(raw)
    df = raw.copy()
    if "reason" not in df.columns:
        df["reason"] = ""
    missing = [c for c in EVENT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{report.source}: events need columns {missing}")
    df = df[list(EVENT_COLUMNS)]
    df["user_id"] = _clean_id(df["user_id"])
    df["item_id"] = _clean_id(df["item_id"])
    df["reason"] = df["reason"].fillna("").astype(str).str.strip()

    empty = (df["user_id"] == "") | (df["item_id"] == "")
    report.drop("empty user_id or item_id", df[empty])
    df = df[~empty]

    ts = pd.to_numeric(df["ts"], errors="coerce")
    bad_ts = ts.isna() | ~np.isfinite(ts.fillna(0.0)) | (ts < 0)
    report.drop("non-numeric or negative timestamp", df[bad_ts])
    df = df[~bad_ts].assign(ts=ts[~bad_ts].astype("int64"))

    polarity = df["polarity"].astype(str).str.strip().str.lower()
    bad_pol = ~polarity.isin([p.value for p in Polarity])
    report.drop("unknown polarity", df[bad_pol])
    df = df[~bad_pol].assign(polarity=polarity[~bad_pol])

    if known_items is not None:
        unknown = ~df["item_id"].isin(known_items)
        report.drop("unknown item", df[unknown])
        df = df[~unknown]

    if sort:
        df = df.sort_values(["user_id", "ts"], kind="stable")
    df = df.reset_index(drop=True)
    report.rows_kept += len(df)
    return df


def drop_non_interest_negatives(events: pd.DataFrame, report: LoadReport) -> pd.DataFrame:
    """Remove negatives whose reason is not about interest (paper appendix B.1), counted."""
    mask = (events["polarity"] == Polarity.NEG) & events["reason"].isin(NON_INTEREST_REASONS)
    report.drop("non-interest negative reason", events[mask])
    report.rows_kept -= int(mask.sum())
    return events[~mask].reset_index(drop=True)


CATEGORY_SEPARATOR = ", "


def categories_of(category: str) -> frozenset[str]:
    """An item's categories from its `category` cell, which holds them `, `-joined."""
    return frozenset(c.strip() for c in category.split(CATEGORY_SEPARATOR.strip()) if c.strip())


def item_texts(items: pd.DataFrame) -> list[str]:
    """The text an item is embedded from: title, then category, then any extra text."""
    parts = items[["title", "category", "text"]].fillna("").astype(str)
    texts = parts["title"]
    for col in ("category", "text"):
        texts = texts.str.cat(parts[col], sep=". ").str.rstrip(". ")
    return [t if t else "(untitled)" for t in texts.tolist()]


def _clean_id(col: pd.Series) -> pd.Series:
    # Ids are opaque strings; "12" and "12.0" from a float-typed CSV column must agree.
    s = col.astype("string").fillna("").str.strip()
    return s.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True).astype(str)
