"""How much items resemble each other through the codebook: max cosine of decoded SIDs.

The one owner of the similarity that the filter service drops candidates by, the GRPO reward
scores outputs by and the offline reports sweep thresholds over. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from conrec.codebook.artifact import Codebook


def max_cosine(codebook: Codebook, candidates: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Max over predictions of the cosine between decoded SIDs: [M, D], [K, D] -> [M] float32.

    Both code arrays must already be valid for ``codebook`` (see ``Codebook.validate``).
    """
    cand = codebook.decode_normalized(candidates, validate=False)  # [M, dim]
    pred = codebook.decode_normalized(predictions, validate=False)  # [K, dim]
    return (cand @ pred.T).max(axis=1)


# Above this many floats (256 MB) a catalogue's item vectors are not kept: item ids are then
# scored from their codes like SIDs.
MAX_ITEM_VECTOR_FLOATS = 64_000_000


def item_vectors(codebook: Codebook, codes: np.ndarray) -> np.ndarray | None:
    """Unit decoded vectors of a catalogue's SIDs, [N, D] codes -> [N, dim] float32, computed
    once per load so that candidates given by item id are scored without decoding them; None
    for a catalogue too large to hold them."""
    if len(codes) * codebook.dim > MAX_ITEM_VECTOR_FLOATS:
        return None
    vectors = np.empty((len(codes), codebook.dim), dtype=np.float32)
    for start in range(0, len(codes), 65_536):
        chunk = np.asarray(codes[start : start + 65_536], dtype=np.int64)
        vectors[start : start + len(chunk)] = codebook.decode_normalized(chunk, validate=False)
    vectors.setflags(write=False)
    return vectors


def max_cosine_vectors(candidates: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """``max_cosine`` of unit vectors: [M, dim] candidates, [K, dim] predictions -> [M]."""
    # [K, M] rather than [M, K]: numpy's max is far faster along a long contiguous axis.
    return (predictions @ candidates.T).max(axis=0)


# Above this many Gram-table floats (levels^2 / 2 x size^2) the tables are not worth their memory.
MAX_GRAM_FLOATS = 8_000_000


def use_tables(codebook: Codebook, n_candidates: int) -> bool:
    """Whether ``max_cosine_tables`` is the cheaper way for this codebook and request size: it
    pays levels x size x dim x K per request for the dot tables instead of M x dim x K.
    (Decoding the candidates, which it skips, costs more than that product suggests.)"""
    return gram_fits(codebook) and codebook.levels * codebook.size <= n_candidates


def gram_fits(codebook: Codebook) -> bool:
    levels, size = codebook.levels, codebook.size
    return levels * (levels - 1) // 2 * size * size <= MAX_GRAM_FLOATS


def prediction_tables(codebook: Codebook, units: np.ndarray) -> np.ndarray:
    """Dot products of unit prediction vectors with every codeword of every level:
    [K, dim] -> [K, D * size], column ``d * size + c`` for codeword ``c`` of level ``d``."""
    levels, size, dim = codebook.levels, codebook.size, codebook.dim
    return units @ codebook.codewords.reshape(levels * size, dim).T


def max_cosine_tables(codebook: Codebook, candidates: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """``max_cosine`` without decoding the candidates: a decoded SID is a sum of codewords, so
    ``dot(sum_d w_d[c_d], p) = sum_d (w_d @ p)[c_d]``. The prediction's tables ``w_d @ P.T``
    ([K, D * size], ``prediction_tables``) are gathered per level; candidate norms come from the
    codebook's cached Gram tables. Same result as ``max_cosine`` up to float32 rounding.
    """
    levels, size = codebook.levels, codebook.size
    rows = (candidates + np.arange(0, levels * size, size)).T  # [D, M] rows of the tables
    # [K, M] rather than [M, K]: numpy's max is far faster along a long contiguous axis.
    dots = tables.take(rows[0], axis=1)
    for level in range(1, levels):
        dots += tables.take(rows[level], axis=1)
    best = dots.max(axis=0)
    norms = np.sqrt(np.maximum(codebook.squared_norms(candidates), 0.0))
    # Cosine = dot / |cand| (|pred| = 1); the max commutes with dividing by a positive norm.
    return best / np.maximum(norms, 1e-12)
