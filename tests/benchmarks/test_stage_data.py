"""A stage's training rows for a large corpus: 1,000,000 translation pairs (a synthetic
catalogue of 500,000 items) tokenised into the stage directory's Arrow file, a chunk at a time
(`conrec.model.stage_data.tokenised_rows`), against the same pairs built as one list and handed to
`datasets.Dataset.from_list` (what a stage did before it streamed).

Each way runs in a fresh process that reports its own peak RSS above its RSS once the catalogue
and tokenizer are built, and its seconds. Run with
`pytest -m benchmark tests/benchmarks/test_stage_data.py -s`; see docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.benchmark

ITEMS = 500_000

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    import numpy as np, pandas as pd
    from conrec.codebook.artifact import ItemSIDTable
    from conrec.model.backbone import build_tokenizer
    from conrec.model.prompts import prompt_vocabulary
    from conrec.model.stage_data import encode_sample, tokenised_rows
    from conrec.model.tasks import translation_samples

    way, items, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    ids = [f"i{n}" for n in range(items)]
    titles = [f"Synthetic film {n} ({1950 + n % 70})" for n in range(items)]
    catalogue = pd.DataFrame({"item_id": ids, "title": titles})
    codes = np.random.default_rng(0).integers(0, 32, size=(items, 3)).astype(np.uint16)
    table = ItemSIDTable(np.array(ids), codes, "bench")
    tokenizer = build_tokenizer(titles[:5000] + prompt_vocabulary(), 3, 32)
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = peak()
    start = time.perf_counter()
    if way == "stream":
        rows = tokenised_rows(translation_samples(catalogue, table), tokenizer, 96, out)
    else:
        from datasets import Dataset
        samples = list(translation_samples(catalogue, table))
        rows = Dataset.from_list(
            [encode_sample(tokenizer, s["prompt"], s["completion"], 96) for s in samples]
        )
    seconds = time.perf_counter() - start
    print(json.dumps({"rows": len(rows), "seconds": seconds, "rss_mib": peak() - base}))
    """
)


def run(way: str, tmp_path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, way, str(ITEMS), str(tmp_path / way)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_stage_data_streams_a_million_pairs(tmp_path):
    stream, listed = run("stream", tmp_path), run("list", tmp_path)
    assert stream["rows"] == listed["rows"] == 2 * ITEMS
    print(
        f"\n{stream['rows']:,} pairs: streamed to Arrow {stream['seconds']:.0f} s, "
        f"peak +{stream['rss_mib']:.0f} MiB; as a list {listed['seconds']:.0f} s, "
        f"peak +{listed['rss_mib']:.0f} MiB"
    )
    print(f"stage_data_rss_stream_vs_list: {stream['rss_mib'] / listed['rss_mib']:.2f}")
    print(f"stage_data_seconds_stream_vs_list: {stream['seconds'] / listed['seconds']:.2f}")
