"""Helpers shared by the service, store and benchmark tests: a synthetic codebook whose cosines
are easy to compute by hand, and run publishing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from batch_gen.store import PredictionStore
from codebook.artifact import EncoderWeights, save_artifact

# Level 0 picks a basis vector e0..e3; levels 1 and 2 add small, known offsets, so that
#   (0,0,0) = e0, (1,0,0) = e1, (0,1,0) = e0 + e1, (0,0,3) = e0 + 0.5 e1, (2,0,0) = e2.
E = np.eye(4, dtype=np.float32)
Z = np.zeros(4, dtype=np.float32)
CODEWORDS = np.stack(
    [
        np.stack([E[0], E[1], E[2], E[3]]),
        np.stack([Z, E[1], E[2], E[3]]),
        np.stack([Z, E[2], E[3], 0.5 * E[1]]),
    ]
)
ITEMS = {
    "e0": (0, 0, 0),
    "e1": (1, 0, 0),
    "e0+e1": (0, 1, 0),
    "e0+.5e1": (0, 0, 3),
    "e2": (2, 0, 0),
}


def build_artifact(out: Path) -> str:
    """Write the hand-made codebook and item table to ``out``; return the codebook version."""
    encoder = EncoderWeights((np.eye(4, dtype=np.float32),), (np.zeros(4, np.float32),))
    codes = np.array(list(ITEMS.values()), dtype=np.uint16)
    return save_artifact(out, CODEWORDS, encoder, list(ITEMS), codes, {"name": "hand-made"})


def publish_run(
    store: PredictionStore, run_id: str, codebook_version: str, users: dict[str, list]
) -> None:
    """Write and publish a run of hand-made predictions (each user: a list of K SIDs)."""
    k = len(next(iter(users.values())))
    writer = store.begin_run(run_id, codebook_version=codebook_version, model_version="m1", k=k)
    writer.write_batch(list(users), np.array(list(users.values()), dtype=np.uint16))
    writer.publish()
