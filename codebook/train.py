"""Train an RQ-VAE on item embeddings, report its quality, and write the codebook artifact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from conrec.codebook.artifact import EncoderWeights, save_artifact
from conrec.codebook.figures import pyplot
from conrec.codebook.geometry import Geometry, reshape
from conrec.codebook.quality import (
    COLLISION_POLICIES,
    CollisionPolicy,
    collision_rate,
    perplexity,
    resolve_collisions,
    usage,
)
from conrec.codebook.rqvae import RQVAE, RQVAEConfig


@dataclass
class TrainConfig:
    epochs: int = field(default=400, metadata={"help": "Passes over the catalogue."})
    batch_size: int = field(default=256, metadata={"help": "Items per step."})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    seed: int = field(default=0, metadata={"help": "Seed for init, shuffling and restarts."})
    collision_policy: CollisionPolicy = field(
        default="reassign",
        metadata={"help": "Items that share a greedy SID: reassigned to free ones, or allowed."},
    )
    # Steps on a small MLP are too short to split across cores: on a busy machine two threads
    # wait on each other for longer than one thread computes.
    threads: int = field(default=1, metadata={"help": "torch intra-op threads while training."})

    def __post_init__(self) -> None:
        if self.collision_policy not in COLLISION_POLICIES:
            choice = self.collision_policy
            raise ValueError(f"collision_policy {choice!r} is not one of {COLLISION_POLICIES}")


@dataclass
class TrainResult:
    model: RQVAE
    codes: np.ndarray  # [N, D] after the collision policy
    history: list[dict[str, float]]  # one row per epoch
    metrics: dict[str, Any]


def train_rqvae(
    embeddings: np.ndarray,
    cfg: RQVAEConfig,
    tcfg: TrainConfig,
    progress: bool = True,
) -> TrainResult:
    """embeddings: [N, in_dim]. Returns the trained model, final SIDs and quality metrics."""
    with _threads(tcfg.threads):
        return _train(embeddings, cfg, tcfg, progress)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(embeddings: np.ndarray, cfg: RQVAEConfig, tcfg: TrainConfig, progress: bool):
    torch.manual_seed(tcfg.seed)
    gen = torch.Generator().manual_seed(tcfg.seed)
    x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] != cfg.in_dim:
        raise ValueError(f"embeddings must be [N, {cfg.in_dim}], got {tuple(x.shape)}")
    if len(x) < cfg.codebook_size:
        raise ValueError(f"{len(x)} items cannot initialise {cfg.codebook_size} codewords")
    model = RQVAE(cfg)
    model.init_codebooks(x, seed=tcfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(tcfg.epochs), desc="training RQ-VAE", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        sums = {"loss": 0.0, "recon": 0.0, "quant": 0.0}
        for i in range(0, len(x), tcfg.batch_size):
            batch = x[perm[i : i + tcfg.batch_size]]
            _, _, losses = model(batch)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            for key in sums:
                sums[key] += losses[key].item() * len(batch) / len(x)
        restarts = _restart_dead_codes(model, x, gen) if epoch < tcfg.epochs - 1 else 0
        history.append({"epoch": epoch, **sums, "restarts": restarts})
        bar.set_postfix(recon=f"{sums['recon']:.5f}", restarts=restarts)
    model.eval()
    codes, metrics = _final_codes(model, x, tcfg.collision_policy)
    metrics["train_seconds"] = round(time.perf_counter() - start, 2)
    metrics["initial_recon_mse"] = history[0]["recon"]
    return TrainResult(model, codes, history, metrics)


@torch.no_grad()
def _restart_dead_codes(model: RQVAE, x: torch.Tensor, gen: torch.Generator) -> int:
    residual = model.encoder(x)
    restarts = 0
    for q in model.quantizers:
        restarts += q.restart_dead(residual, gen)
        residual = residual - q.codewords[q.nearest(residual)]
    return restarts


@torch.no_grad()
def _final_codes(model: RQVAE, x: torch.Tensor, policy: str) -> tuple[np.ndarray, dict[str, Any]]:
    cfg = model.cfg
    x_rec, greedy_t, losses = model(x)
    greedy = greedy_t.numpy()
    _, last_d2 = model.residual_distances(x)
    metrics: dict[str, Any] = {
        "items": len(x),
        "recon_mse": float(losses["recon"]),
        "recon_cosine": float(torch.nn.functional.cosine_similarity(x_rec, x).mean()),
        "usage_per_level": usage(greedy, cfg.codebook_size),
        "perplexity_per_level": perplexity(greedy, cfg.codebook_size),
        "collision_rate_greedy": collision_rate(greedy),
        "collision_policy": policy,
    }
    codes, unresolved = greedy, 0
    if policy == "reassign":
        ranked = last_d2.argsort(dim=1).numpy()
        chosen = last_d2.gather(1, greedy_t[:, -1:]).squeeze(1).numpy()
        codes, unresolved = resolve_collisions(greedy, ranked, chosen)
    metrics["collision_rate"] = collision_rate(codes)
    metrics["unresolved_collisions"] = unresolved
    return codes.astype(np.uint16), metrics


def encoder_weights(model: RQVAE) -> EncoderWeights:
    """The encoder MLP as numpy arrays (what the faiss bulk encoder runs)."""
    linears = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    return EncoderWeights(
        tuple(m.weight.detach().numpy().copy() for m in linears),
        tuple(m.bias.detach().numpy().copy() for m in linears),
    )


def write_artifact(
    out_dir: str | Path,
    result: TrainResult,
    item_ids: list[str],
    tcfg: TrainConfig,
    extra_meta: dict[str, Any] | None = None,
    geometry: Geometry = "raw",
) -> str:
    """Save the codebook + item table, its latent space in `geometry`; returns the codebook
    version."""
    meta = {
        "rqvae": asdict(result.model.cfg),
        "train": asdict(tcfg),
        "metrics": result.metrics,
        "geometry": geometry,
        "created_at": int(time.time()),
        **(extra_meta or {}),
    }
    codewords, encoder = reshape(
        result.model.codewords().numpy(), encoder_weights(result.model), result.codes, geometry
    )
    return save_artifact(out_dir, codewords, encoder, item_ids, result.codes, meta)


def plot_history(
    history: list[dict[str, float]], metrics: dict[str, Any], path: str | Path
) -> None:
    """Loss curves and per-level usage/perplexity, one PNG for the training report."""
    plt = pyplot()

    fig, (ax_loss, ax_use) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h["epoch"] for h in history]
    for key in ("recon", "quant"):
        ax_loss.plot(epochs, [h[key] for h in history], label=key)
    ax_loss.set(yscale="log", xlabel="epoch", ylabel="loss", title="RQ-VAE training")
    ax_loss.legend()
    levels = np.arange(len(metrics["usage_per_level"]))
    ax_use.bar(levels - 0.2, metrics["usage_per_level"], width=0.4, label="usage (fraction of K)")
    ax_ppl = ax_use.twinx()
    ax_ppl.bar(levels + 0.2, metrics["perplexity_per_level"], width=0.4, color="tab:orange")
    ax_use.set(xticks=levels, xlabel="level", ylabel="usage", ylim=(0, 1.05))
    ax_ppl.set_ylabel("perplexity", color="tab:orange")
    ax_use.set_title(
        f"collision rate {metrics['collision_rate_greedy']:.3f} greedy, "
        f"{metrics['collision_rate']:.3f} after {metrics['collision_policy']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
