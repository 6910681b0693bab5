import numpy as np
import pytest
import torch

from conrec.codebook.rqvae import RQVAE, RQVAEConfig, kmeans
from conrec.codebook.train import TrainConfig, train_rqvae


def test_training_lowers_reconstruction_and_uses_most_codewords(trained):
    m = trained.metrics
    assert m["recon_mse"] < 0.6 * m["initial_recon_mse"]
    assert trained.history[-1]["recon"] < trained.history[0]["recon"]
    assert min(m["usage_per_level"]) >= 0.9
    assert min(m["perplexity_per_level"]) > 0.7 * 32
    assert m["collision_rate"] == 0.0  # the reassign policy resolved every greedy collision
    assert m["collision_rate_greedy"] > 0.0
    assert m["unresolved_collisions"] == 0
    assert len(np.unique(trained.codes, axis=0)) == len(trained.codes)


def test_codes_only_differ_from_greedy_in_the_last_level(trained, item_embeddings):
    greedy = trained.model.encode(torch.from_numpy(item_embeddings)).numpy()
    assert (trained.codes[:, :-1] == greedy[:, :-1]).all()
    moved = (trained.codes[:, -1] != greedy[:, -1]).mean()
    assert moved == pytest.approx(trained.metrics["collision_rate_greedy"])


def test_kmeans_finds_well_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=gen) for c in centers])
    found = kmeans(x, 3, seed=1)
    dist = torch.cdist(centers, found).min(dim=1).values
    assert (dist < 0.2).all()


def test_dead_codewords_are_restarted_onto_data():
    cfg = RQVAEConfig(in_dim=8, hidden_dims=(16,), latent_dim=4, levels=1, codebook_size=4)
    model = RQVAE(cfg)
    x = torch.randn(64, 8)
    model.init_codebooks(x)
    q = model.quantizers[0]
    q.codewords[0] = q.ema_sum[0] = 1e6  # nothing will ever pick it
    model.train()
    for _ in range(200):
        model(x)
    assert q.ema_count[0] < cfg.dead_code_threshold
    residual = model.encoder(x).detach()
    restarted = q.restart_dead(residual, torch.Generator().manual_seed(0))
    assert restarted >= 1
    assert q.codewords[0].abs().max() < 1e3
    assert (q.nearest(residual) == 0).any()


def test_gradient_codebook_variant_trains_too():
    x = np.random.default_rng(0).normal(size=(128, 16)).astype(np.float32)
    cfg = RQVAEConfig(in_dim=16, hidden_dims=(32,), latent_dim=8, codebook_size=8, ema=False)
    result = train_rqvae(x, cfg, TrainConfig(epochs=40, batch_size=32), progress=False)
    assert result.history[-1]["recon"] < result.history[0]["recon"]
    assert result.codes.shape == (128, 3)


def test_bad_inputs_are_clear_errors():
    x = np.zeros((10, 16), dtype=np.float32)
    with pytest.raises(ValueError, match=r"embeddings must be \[N, 384\]"):
        train_rqvae(x, RQVAEConfig(), TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="cannot initialise 32 codewords"):
        train_rqvae(x, RQVAEConfig(in_dim=16), TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="collision_policy 'drop'"):
        TrainConfig(collision_policy="drop")
