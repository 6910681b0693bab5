"""RQ-VAE: item embeddings -> D levels of residual codes -> reconstruction (paper eq. 1, app. A).

    X = E(x)                          encoder MLP
    R(1) = X; Z(d) = nearest codeword of C(d) to R(d); R(d+1) = R(d) - Z(d)
    X_hat = sum_d Z(d);  x_hat = Dec(X_hat)
    L = ||x - x_hat||^2 + lambda * sum_d (||R(d) - sg[Z(d)]||^2 + ||sg[R(d)] - Z(d)||^2)

With `ema=True` (default) the codebook term ||sg[R] - Z||^2 is replaced by exponential-moving-
average codeword updates, which train more stably on small catalogues; the commitment term stays.
Codebooks start from k-means on the first residuals, and codewords that stop being chosen are
restarted on random residuals so that usage stays high.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RQVAEConfig:
    in_dim: int = field(default=384, metadata={"help": "Item embedding width."})
    hidden_dims: tuple[int, ...] = field(default=(256, 128), metadata={"help": "MLP widths."})
    latent_dim: int = field(default=32, metadata={"help": "Width of X and of each codeword."})
    levels: int = field(default=3, metadata={"help": "D, SID length (paper: 3)."})
    codebook_size: int = field(default=32, metadata={"help": "K per level (paper: 8192)."})
    commitment_weight: float = field(default=0.25, metadata={"help": "lambda in eq. (1)."})
    ema: bool = field(default=True, metadata={"help": "EMA codeword updates instead of grads."})
    ema_decay: float = field(default=0.95, metadata={"help": "EMA decay of codeword stats."})
    dead_code_threshold: float = field(
        default=0.03, metadata={"help": "EMA usage (items/step) below which a code restarts."}
    )


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; empty clusters are re-seeded. x: [N, d] -> [k, d]."""
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    centers = torch.empty(k, x.shape[1], dtype=x.dtype)
    centers[0] = x[torch.randint(n, (1,), generator=gen)]
    d2 = (x - centers[0]).pow(2).sum(1)
    for i in range(1, k):  # k-means++: next center with prob. proportional to squared distance
        total = d2.sum()
        probs = d2 / total if total > 0 else torch.full_like(d2, 1.0 / n)
        centers[i] = x[torch.multinomial(probs, 1, generator=gen)]
        d2 = torch.minimum(d2, (x - centers[i]).pow(2).sum(1))  # O(N d) per center, not O(N k d)
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        empty = counts == 0
        centers = torch.where(empty[:, None], centers, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            centers[empty] = x[torch.randint(n, (int(empty.sum()),), generator=gen)]
    return centers


class ResidualQuantizer(nn.Module):
    """One level: a codebook of K codewords, nearest-neighbour assignment, EMA or grad updates."""

    def __init__(self, cfg: RQVAEConfig):
        super().__init__()
        self.cfg = cfg
        k, d = cfg.codebook_size, cfg.latent_dim
        if cfg.ema:
            self.register_buffer("codewords", torch.randn(k, d) * 0.01)
        else:
            self.codewords = nn.Parameter(torch.randn(k, d) * 0.01)
        self.register_buffer("ema_count", torch.ones(k))
        self.register_buffer("ema_sum", self.codewords.detach().clone())

    @torch.no_grad()
    def init_from(self, residuals: torch.Tensor, seed: int) -> None:
        centers = kmeans(residuals, self.cfg.codebook_size, seed=seed)
        self.codewords.data.copy_(centers)
        self.ema_sum.copy_(centers)
        self.ema_count.fill_(1.0)

    def nearest(self, r: torch.Tensor) -> torch.Tensor:
        """r: [B, d] -> codes [B] (squared L2; the same rule as the faiss bulk encoder)."""
        d2 = (
            r.pow(2).sum(1, keepdim=True)
            - 2 * r @ self.codewords.t()
            + self.codewords.pow(2).sum(1)[None, :]
        )
        return d2.argmin(dim=1)

    def forward(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """r: [B, d] -> (z [B, d], codes [B], quantisation loss [])."""
        codes = self.nearest(r.detach())
        z = self.codewords[codes]
        commit = F.mse_loss(r, z.detach())
        if self.cfg.ema:
            if self.training:
                self._ema_update(r.detach(), codes)
            loss = self.cfg.commitment_weight * commit
        else:
            loss = self.cfg.commitment_weight * (commit + F.mse_loss(z, r.detach()))
        return z, codes, loss

    @torch.no_grad()
    def _ema_update(self, r: torch.Tensor, codes: torch.Tensor) -> None:
        decay, k = self.cfg.ema_decay, self.cfg.codebook_size
        onehot = F.one_hot(codes, k).type_as(r)  # [B, K]
        self.ema_count.mul_(decay).add_(onehot.sum(0), alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(onehot.t() @ r, alpha=1 - decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + k * 1e-5) * n  # Laplace smoothing
        self.codewords.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    def restart_dead(self, r: torch.Tensor, gen: torch.Generator) -> int:
        """Move codewords with little recent use onto random residuals r: [B, d]."""
        dead = self.ema_count < self.cfg.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        picks = r[torch.randint(r.shape[0], (n_dead,), generator=gen)]
        self.codewords.data[dead] = picks
        self.ema_sum[dead] = picks
        self.ema_count[dead] = 1.0
        return n_dead


class RQVAE(nn.Module):
    def __init__(self, cfg: RQVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = _mlp([cfg.in_dim, *cfg.hidden_dims, cfg.latent_dim])
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden_dims), cfg.in_dim])
        self.quantizers = nn.ModuleList(ResidualQuantizer(cfg) for _ in range(cfg.levels))

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, seed: int = 0) -> None:
        """k-means initialisation, level by level, on the residuals of x: [N, in_dim]."""
        r = self.encoder(x)
        for level, q in enumerate(self.quantizers):
            q.init_from(r, seed + level)
            r = r - q.codewords[q.nearest(r)]

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """latent: [B, d] -> (X_hat [B, d] straight-through, codes [B, D], quant loss [])."""
        residual = latent
        x_hat = torch.zeros_like(latent)
        codes, loss = [], latent.new_zeros(())
        for q in self.quantizers:
            z, c, level_loss = q(residual)
            residual = residual - z.detach()
            x_hat = x_hat + z.detach()
            codes.append(c)
            loss = loss + level_loss
        # Straight-through: the decoder's gradient reaches the encoder as if X_hat were X.
        x_hat = latent + (x_hat - latent).detach()
        return x_hat, torch.stack(codes, dim=1), loss

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """x: [B, in_dim] -> (x_rec [B, in_dim], codes [B, D], losses)."""
        latent = self.encoder(x)
        x_hat, codes, quant_loss = self.quantize(latent)
        x_rec = self.decoder(x_hat)
        recon = F.mse_loss(x_rec, x)
        return x_rec, codes, {"loss": recon + quant_loss, "recon": recon, "quant": quant_loss}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The torch encoding path: x [N, in_dim] -> codes [N, D] (greedy residual quantisation)."""
        residual = self.encoder(x)
        codes = []
        for q in self.quantizers:
            c = q.nearest(residual)
            residual = residual - q.codewords[c]
            codes.append(c)
        return torch.stack(codes, dim=1)

    @torch.no_grad()
    def residual_distances(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes [N, D], squared distances [N, K] of the last residual to the last codebook)."""
        residual = self.encoder(x)
        codes = []
        for q in self.quantizers[:-1]:
            c = q.nearest(residual)
            residual = residual - q.codewords[c]
            codes.append(c)
        last = self.quantizers[-1].codewords
        d2 = torch.cdist(residual, last).pow(2)
        codes.append(d2.argmin(dim=1))
        return torch.stack(codes, dim=1), d2

    def codewords(self) -> torch.Tensor:
        """[D, K, latent_dim]."""
        return torch.stack([q.codewords.detach() for q in self.quantizers])
