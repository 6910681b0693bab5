"""The space the filter's cosine is measured in: the codebook's decoded vectors as trained
(`raw`), moved to mean zero over the catalogue (`centred`), or centred and whitened
(`whitened`: unit variance in every direction of the latent space, ZCA).

Trained text encoders put most items in one narrow cone (on ml-100k's MiniLM titles the median
cosine between two decoded films is ~0.83), so a raw max cosine is high for almost any pair.
A decoded SID is a sum of codewords, so an affine map of the latent space, x -> A (x - m), is
written into the artifact itself: every codeword through A, the first level's also minus A m,
and the encoder's last layer likewise, so that items encoded later land in the same space.
Nothing that reads the artifact changes (the service's dot tables, the reward, the reports).
With `centred` (A = I) every residual, and so every SID, is exactly as trained; with `whitened`
the catalogue keeps its trained SIDs, and a new item is quantised in the whitened space.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from conrec.codebook.artifact import EncoderWeights

Geometry = Literal["raw", "centred", "whitened"]
GEOMETRIES: tuple[Geometry, ...] = ("raw", "centred", "whitened")
# Whitening divides by each direction's standard deviation: directions with less variance than
# this share of the largest are scaled as if they had this much, not blown up from noise.
EIGENVALUE_FLOOR = 1e-4


def reshape(
    codewords: np.ndarray, encoder: EncoderWeights, codes: np.ndarray, geometry: Geometry
) -> tuple[np.ndarray, EncoderWeights]:
    """The artifact's codewords [D, K, dim] and encoder in `geometry`, fitted on the decoded
    vectors of the catalogue's SIDs `codes` [N, D]."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if geometry == "raw":
        return codewords, encoder
    codes = np.asarray(codes, dtype=np.int64)
    decoded = sum(codewords[d][codes[:, d]] for d in range(codewords.shape[0]))  # [N, dim]
    mean = decoded.mean(axis=0)
    linear = np.eye(codewords.shape[2]) if geometry == "centred" else _zca(decoded - mean)
    shifted = np.einsum("dkl,ml->dkm", codewords.astype(np.float64), linear)
    shifted[0] -= linear @ mean
    weights, biases = list(encoder.weights), list(encoder.biases)
    weights[-1] = linear @ weights[-1]
    biases[-1] = linear @ (biases[-1] - mean)
    return (
        shifted.astype(np.float32),
        EncoderWeights(
            tuple(w.astype(np.float32) for w in weights),
            tuple(b.astype(np.float32) for b in biases),
        ),
    )


def _zca(centred: np.ndarray) -> np.ndarray:
    """[dim, dim] symmetric whitening of centred rows: cov^(-1/2), small eigenvalues floored."""
    values, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    values = np.maximum(values, EIGENVALUE_FLOOR * values.max())
    return (vectors / np.sqrt(values)) @ vectors.T
