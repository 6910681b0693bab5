"""Bulk encoding of (new) items into SIDs with faiss, torch-free.

Runs the RQ-VAE encoder MLP from the artifact's numpy weights, then greedy residual quantisation
with one exact L2 faiss index per level: the same nearest-codeword rule as `RQVAE.encode`, so both
paths give the same SIDs. With `use_gpu=True` and faiss-gpu installed, the indexes move to the
GPU; everything else is unchanged.
"""

from __future__ import annotations

import faiss
import numpy as np

from codebook.artifact import ArtifactError, Codebook, ItemSIDTable
from codebook.quality import resolve_collisions


class BulkEncoder:
    def __init__(self, codebook: Codebook, use_gpu: bool = False):
        if codebook.encoder is None:
            raise ArtifactError("this codebook artifact has no encoder weights to encode items")
        self.codebook = codebook
        self._indexes = []
        for level in range(codebook.levels):
            index = faiss.IndexFlatL2(codebook.dim)
            index.add(np.ascontiguousarray(codebook.codewords[level]))
            if use_gpu:
                index = faiss.index_cpu_to_all_gpus(index)
            self._indexes.append(index)

    def encode(self, embeddings: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
        """embeddings [N, in_dim] -> greedy SIDs [N, D] (uint16)."""
        codes, _, _ = self._encode(embeddings, batch_size, last_k=1)
        return codes

    def encode_new_items(
        self, embeddings: np.ndarray, catalogue: ItemSIDTable, batch_size: int = 65_536
    ) -> tuple[np.ndarray, int]:
        """SIDs for items joining `catalogue`, with the ``reassign`` collision policy applied
        against the SIDs already published. Returns (codes [N, D], unresolved collisions)."""
        codes, ranked, dist = self._encode(embeddings, batch_size, last_k=self.codebook.size)
        occupied = map(tuple, catalogue.codes.tolist())
        resolved, unresolved = resolve_collisions(codes, ranked, dist, occupied)
        return resolved.astype(np.uint16), unresolved

    def _encode(
        self, embeddings: np.ndarray, batch_size: int, last_k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"embeddings must be [N, dim], got shape {x.shape}")
        n, levels = len(x), self.codebook.levels
        codes = np.empty((n, levels), dtype=np.uint16)
        ranked = np.empty((n, last_k), dtype=np.int64)
        dist = np.empty(n, dtype=np.float32)
        for start in range(0, n, batch_size):
            residual = np.ascontiguousarray(self.codebook.encoder(x[start : start + batch_size]))
            stop = start + len(residual)
            for level, index in enumerate(self._indexes):
                k = last_k if level == levels - 1 else 1
                d2, idx = index.search(residual, k)
                codes[start:stop, level] = idx[:, 0]
                residual -= self.codebook.codewords[level][idx[:, 0]]
            ranked[start:stop] = idx
            dist[start:stop] = d2[:, 0]
        return codes, ranked, dist
