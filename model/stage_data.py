"""A supervised stage's training rows on disk: tokenised once per stage, by one process, into an
Arrow file in the stage directory that every training process memory-maps.

Samples arrive as an iterable and are tokenised and written a chunk at a time, so a corpus of
millions of pairs is never held in memory whole: peak memory is one chunk plus the pages of the
file the trainer touches. The file is named by the stage's directory (its fingerprint covers
the data and the tokenizer), so a stage resumed after a crash reads it again instead of
re-tokenising; it is written under a temporary name and renamed, so a crash mid-write leaves
no partial file behind.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from conrec.model import distributed
from conrec.model.backbone import encode_completion, encode_prompt

IGNORE_INDEX = -100
ROWS_FILE = "data/rows.arrow"
CHUNK_ROWS = 8192
_SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])


def join_masked(prompt_ids: list[int], completion_ids: list[int], max_length: int) -> dict:
    """input_ids = prompt + completion; labels mask the prompt. A long prompt loses its oldest
    tokens, so the most recent history survives."""
    completion_ids = completion_ids[:max_length]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) - (max_length - len(completion_ids))) :]
    return {
        "input_ids": prompt_ids + completion_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }


def encode_sample(tokenizer, prompt: str, completion: str, max_length: int) -> dict:
    """One sample's row, the plain form of `encode_chunk`: the prompt with the tokenizer's own
    special tokens (as TRL tokenises prompts), the completion without them and then EOS."""
    return join_masked(
        encode_prompt(tokenizer, prompt), encode_completion(tokenizer, completion), max_length
    )


def encode_chunk(tokenizer, samples: list[dict], max_length: int) -> dict[str, list[list[int]]]:
    """`encode_sample` of each of `samples` ({"prompt", "completion"}), tokenised as one batch."""
    prompts = tokenizer([s["prompt"] for s in samples])["input_ids"]
    completions = tokenizer([s["completion"] for s in samples], add_special_tokens=False)
    eos = tokenizer.eos_token_id
    rows = [
        join_masked(list(p), [*c, eos], max_length)
        for p, c in zip(prompts, completions["input_ids"], strict=True)
    ]
    return {key: [r[key] for r in rows] for key in ("input_ids", "labels")}


def tokenised_rows(samples: Iterable[dict], tokenizer, max_length: int, stage_dir: Path):
    """The stage's rows as a memory-mapped `datasets.Dataset`; the leader tokenises `samples`
    into `<stage_dir>/data/rows.arrow` when no earlier attempt did, the other ranks read it."""
    from datasets import Dataset

    path = Path(stage_dir) / ROWS_FILE
    with distributed.leader_first():
        if distributed.is_leader() and not path.is_file():
            write_rows(samples, tokenizer, max_length, path)
    return Dataset.from_file(str(path))


def write_rows(samples: Iterable[dict], tokenizer, max_length: int, path: Path) -> int:
    """Tokenise `samples` a chunk at a time into an Arrow stream file at `path`; returns rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    written = 0
    with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, _SCHEMA) as stream:
        for chunk in _chunks(samples, CHUNK_ROWS):
            stream.write_batch(
                pa.record_batch(encode_chunk(tokenizer, chunk, max_length), schema=_SCHEMA)
            )
            written += len(chunk)
    os.replace(partial, path)
    return written


def _chunks(samples: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(samples)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
