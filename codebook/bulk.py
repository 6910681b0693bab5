"""Bulk encoding of (new) items into SIDs with faiss, torch-free.

Runs the RQ-VAE encoder MLP from the artifact's numpy weights, then greedy residual quantisation
with one exact L2 faiss index per level: the same nearest-codeword rule as `RQVAE.encode`, so both
paths give the same SIDs. With `use_gpu=True` and faiss-gpu installed, the indexes move to the
GPU; everything else is unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from conrec.codebook.artifact import ArtifactError, Codebook, ItemSIDTable, save_item_sids
from conrec.codebook.quality import resolve_collisions
from conrec.codebook.versions import load_current


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


@dataclass(frozen=True)
class AddedItems:
    codebook_version: str
    table_version: int  # of the table now on disk (unchanged when nothing was added)
    added: int
    skipped: int  # ids already in the table, or repeated in the input
    unresolved: int  # new items left sharing a SID (every last-level code of the prefix taken)
    items: int  # in the table now


def add_items(
    root: str | Path, item_ids: list[str], embeddings: np.ndarray, use_gpu: bool = False
) -> AddedItems:
    """Give new items SIDs in the current codebook version of ``root`` (a versioned root or a
    plain artifact directory) and write the grown table as its next ``table_version``.

    Items already in the table are skipped, never re-encoded: SIDs do not change within a
    codebook version, so predictions made earlier still name the same items. New items go
    through the ``reassign`` collision policy against every SID already taken."""
    ids = [str(i) for i in item_ids]
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(ids):
        raise ValueError(f"{len(ids)} item ids but embeddings of shape {emb.shape}")
    path, codebook, _ = load_current(root)
    # One writer at a time per version: two concurrent runs would each drop the other's items.
    with _locked(path):
        path, codebook, table = load_current(path)
        seen = set(table.item_ids.tolist())
        rows = []
        for row, item in enumerate(ids):
            if item not in seen:
                seen.add(item)
                rows.append(row)
        skipped = len(ids) - len(rows)
        if not rows:
            return AddedItems(codebook.version, table.table_version, 0, skipped, 0, len(table))
        codes, unresolved = BulkEncoder(codebook, use_gpu=use_gpu).encode_new_items(
            emb[rows], table
        )
        grown = ItemSIDTable(
            np.concatenate([table.item_ids, np.asarray([ids[r] for r in rows], dtype=np.str_)]),
            np.concatenate([table.codes.astype(np.uint16), codes]),
            table.codebook_version,
            table.table_version + 1,
        )
        save_item_sids(path, grown)
    return AddedItems(
        codebook.version, grown.table_version, len(rows), skipped, unresolved, len(grown)
    )


@contextlib.contextmanager
def _locked(artifact_dir: Path) -> Iterator[None]:
    with open(artifact_dir / ".item_sids.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
