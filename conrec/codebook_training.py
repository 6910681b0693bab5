"""Training a codebook for a dataset: items -> embeddings -> RQ-VAE -> codebook artifact."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from model.data.prepared import load_tables
from model.pypi import cache_dir

log = logging.getLogger(__name__)


def train_codebook(
    out: str | Path,
    *,
    data: str | Path | None = None,
    embeddings_path: str | None = None,
    levels: int = 3,
    size: int = 32,
    latent_dim: int = 32,
    epochs: int = 400,
    collision_policy: str = "reassign",
    seed: int = 0,
) -> dict[str, Any]:
    """Train and write a codebook artifact for the items of a prepared-tables folder (None:
    ml-100k's); returns its quality metrics."""
    from codebook.embed import DEFAULT_ENCODER, MiniLMEncoder, embed_texts, load_precomputed
    from codebook.rqvae import RQVAEConfig
    from codebook.train import TrainConfig, plot_history, train_rqvae, write_artifact
    from model.data.tables import item_texts

    tables = load_tables(data)
    source, items = tables.name, tables.items
    item_ids = items["item_id"].tolist()
    if embeddings_path:
        emb, encoder_name = load_precomputed(embeddings_path, item_ids), Path(embeddings_path).name
    else:
        emb = embed_texts(item_texts(items), MiniLMEncoder(), cache_dir() / "embeddings")
        encoder_name = DEFAULT_ENCODER
    cfg = RQVAEConfig(in_dim=emb.shape[1], latent_dim=latent_dim, levels=levels, codebook_size=size)
    tcfg = TrainConfig(epochs=epochs, seed=seed, collision_policy=collision_policy)
    result = train_rqvae(emb, cfg, tcfg)
    version = write_artifact(
        out, result, item_ids, tcfg, {"encoder": encoder_name, "dataset": source}
    )
    out_dir = Path(out)
    plot_history(result.history, result.metrics, out_dir / "training.png")
    metrics = {"codebook_version": version, **result.metrics}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("codebook %s written to %s", version, out_dir)
    return metrics
