"""Bulk SID encoding: faiss (torch-free) vs the RQ-VAE's torch encoding path, items/s.

Run: pytest -m benchmark tests/benchmarks/test_codebook_encode.py -s
Both paths run the same encoder MLP and greedy residual quantisation over the same embeddings,
in the same process, with the same thread count; the figure is their ratio.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from conrec.codebook.artifact import load_codebook, save_artifact
from conrec.codebook.bulk import BulkEncoder
from conrec.codebook.rqvae import RQVAE, RQVAEConfig
from conrec.codebook.train import encoder_weights

pytestmark = pytest.mark.benchmark

N_ITEMS = 100_000


def _best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("size", [256, 2048])
def test_faiss_vs_torch_encoding_throughput(tmp_path, size):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(N_ITEMS, 384)).astype(np.float32)
    cfg = RQVAEConfig(codebook_size=size, latent_dim=64)
    model = RQVAE(cfg).eval()
    x = torch.from_numpy(emb)
    model.init_codebooks(x[:8_192])
    ids = np.arange(N_ITEMS).astype(str)
    save_artifact(tmp_path, model.codewords().numpy(), encoder_weights(model), ids,
                  np.zeros((N_ITEMS, 3), np.uint16), {})  # fmt: skip
    bulk = BulkEncoder(load_codebook(tmp_path))

    def torch_path():
        return torch.cat([model.encode(x[i : i + 65_536]) for i in range(0, N_ITEMS, 65_536)])

    assert (bulk.encode(emb).astype(np.int64) == torch_path().numpy()).mean() > 0.999
    t_torch = _best_of(torch_path)
    t_faiss = _best_of(lambda: bulk.encode(emb))
    ratio = t_torch / t_faiss
    print(
        f"\ncodebook K={size}: torch {N_ITEMS / t_torch:,.0f} items/s, "
        f"faiss {N_ITEMS / t_faiss:,.0f} items/s, threads={torch.get_num_threads()}"
    )
    print(f"faiss_vs_torch_encode_ratio_K{size}: {ratio:.2f}")
    assert ratio > 0
