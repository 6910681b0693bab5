"""Scoring: how much each candidate resembles the user's predicted negatives. Pure numpy."""

from __future__ import annotations

from itertools import compress

import numpy as np

from codebook.artifact import Codebook


def max_cosine(codebook: Codebook, candidates: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Max over predictions of the cosine between decoded SIDs: [M, D], [K, D] -> [M] float32.

    Both code arrays must already be valid for ``codebook`` (see ``Codebook.validate``).
    """
    cand = codebook.decode_normalized(candidates, validate=False)  # [M, dim]
    pred = codebook.decode_normalized(predictions, validate=False)  # [K, dim]
    return (cand @ pred.T).max(axis=1)


def split(
    item_ids: list[str], scores: np.ndarray, threshold: float
) -> tuple[list[str], list[str], list[float]]:
    """Kept ids, dropped ids and the dropped ids' scores; drop means score > threshold."""
    drop = scores > threshold
    if not drop.any():
        return item_ids, [], []
    dropped_at = np.flatnonzero(drop)
    kept = list(compress(item_ids, (~drop).tolist()))
    return kept, [item_ids[i] for i in dropped_at.tolist()], scores[dropped_at].tolist()
