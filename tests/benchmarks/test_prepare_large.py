"""`conrec data prepare` on a large ratings export: wall time and peak RSS.

Run: pytest -m benchmark tests/benchmarks/test_prepare_large.py -s
(`CONREC_BENCH_EVENTS` changes the 20,000,000 events.) A MovieLens-style export is generated
(half-star ratings, trailing empty columns, 200,000 users, 50,000 titled items with
pipe-separated genres), then prepared by the real command in a child process. The reference,
measured in the same run on the same file, is pyarrow reading the whole CSV into memory with no
mapping or validation: the ratio says what the mapping, validation, sort and write add.
Goals: under 5 minutes and under 6 GiB peak RSS on a 2-core machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

pytestmark = pytest.mark.benchmark

EVENTS = int(os.environ.get("CONREC_BENCH_EVENTS", 20_000_000))
USERS, ITEMS = 200_000, 50_000
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation")


def write_export(folder: Path, events: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ids = np.arange(ITEMS)
    genres = ["|".join(rng.choice(GENRES, size=rng.integers(1, 4), replace=False)) for _ in ids]
    pacsv.write_csv(
        pa.table({"movieId": ids, "title": [f"Movie {i} ({1950 + i % 70})" for i in ids],
                  "genres": genres}),
        folder / "movies.csv",
    )  # fmt: skip
    with open(folder / "ratings.csv", "w") as fh:
        fh.write("userId,movieId,rating,timestamp,,\n")
        for start in range(0, events, 2_000_000):
            n = min(2_000_000, events - start)
            users = rng.integers(0, USERS, n)
            items = rng.zipf(1.3, n) % ITEMS
            ratings = rng.integers(1, 11, n) / 2
            ts = rng.integers(1_500_000_000, 1_700_000_000, n)
            rows = np.char.add(
                np.char.add(np.char.add(users.astype(str), ","), items.astype(str)),
                np.char.add(
                    np.char.add(",", ratings.astype(str)), np.char.add(",", ts.astype(str))
                ),
            )
            fh.write(",,\n".join(rows.tolist()) + ",,\n")


def test_prepare_a_large_export_within_time_and_memory(tmp_path):
    write_export(tmp_path, EVENTS)
    size_mb = (tmp_path / "ratings.csv").stat().st_size / 2**20

    start = time.perf_counter()
    reference = pacsv.read_csv(tmp_path / "ratings.csv").num_rows
    t_reference = time.perf_counter() - start
    assert reference == EVENTS

    command = [
        sys.executable, "-m", "conrec", "data", "prepare", "--out", str(tmp_path / "out"),
        "--events", str(tmp_path / "ratings.csv"), "--items", str(tmp_path / "movies.csv"),
        "--user-id", "userId", "--item-id", "movieId", "--ts", "timestamp",
        "--rating", "rating", "--dislike-at-most", "2", "--like-at-least", "4",
        "--title", "title", "--category", "genres", "--category-sep", "|",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # kB -> GiB

    print(f"\n{EVENTS:,} events ({size_mb:,.0f} MB CSV): prepare {seconds:.1f} s "
          f"({EVENTS / seconds:,.0f} events/s), peak RSS {peak_gib:.2f} GiB; "
          f"pyarrow read_csv alone {t_reference:.1f} s")  # fmt: skip
    print(f"prepare_vs_read_csv_time_ratio: {seconds / t_reference:.1f}")
    print(f"prepare_seconds: {seconds:.1f}")
    print(f"prepare_peak_rss_gib: {peak_gib:.2f}")
    assert seconds < 300
    assert peak_gib < 6
