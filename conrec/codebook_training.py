"""Training a codebook for a dataset: items -> item vectors -> RQ-VAE -> codebook artifact.

Item vectors (`ItemVectors`): `text`, the item's text through the MiniLM encoder (or
precomputed `--embeddings`); `collaborative`, the biased factorisation's item factors and bias
(`conrec.model.mf`, neg -1 / exposure 0 / pos +1), fitted on every user's events up to that
user's own cutoff (the codebook is trained once for all users: union-trained, like the LLM), for
catalogues without text; `text+collaborative`, both, each scaled to unit length, side by side.
An item nobody has rated by then has no collaborative part (zeros). With collaborative vectors
alone such an item has nothing to encode: it gets no SID (left out of the item table, the
service keeps it unscored) rather than sharing one meaningless SID with every other new item;
`conrec codebook add-items` gives it one once it has a vector. The latent space the filter's
cosine is measured in can be centred or whitened (`geometry`, `conrec.codebook.geometry`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from conrec.codebook.geometry import Geometry
from conrec.codebook.rqvae import RQVAEConfig
from conrec.codebook.train import TrainConfig
from conrec.model.data.cutoff_spec import CUTOFF_HELP

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
ItemVectors = Literal["text", "collaborative", "text+collaborative"]
COLLABORATIVE_FACTORS = 32


@dataclass
class CodebookTraining:
    """What `conrec codebook train` (and the pipeline's codebook step) trains."""

    item_vectors: ItemVectors = field(
        default="text",
        metadata={"help": "What the codebook encodes: the item's text, its factorisation of the "
                  "feedback (catalogues without text), or both."},
    )  # fmt: skip
    embeddings: str | None = field(
        default=None,
        metadata={"help": "Precomputed .npz (item_ids, embeddings) instead of the text encoder.",
                  "path": True},
    )  # fmt: skip
    cutoff: str = field(
        default="midpoint",
        metadata={"help": f"Collaborative vectors learn from each user's events up to it: "
                  f"{CUTOFF_HELP}"},
    )  # fmt: skip
    geometry: Geometry = field(
        default="raw",
        metadata={"help": "The latent space the filter's cosine is measured in: as trained, "
                  "centred on the catalogue's mean, or whitened (`conrec.codebook.geometry`)."},
    )  # fmt: skip
    # in_dim is the item vectors' width, known once they are computed.
    rqvae: RQVAEConfig = field(default_factory=RQVAEConfig)
    training: TrainConfig = field(default_factory=TrainConfig)


def collaborative_vectors(events: pd.DataFrame, item_ids: list[str], cutoff: str) -> np.ndarray:
    """[N, factors + 1] item factors and bias of the factorisation of every user's events up to
    their own cutoff; zeros for an item without any."""
    from conrec.evaluation.users import own_history_events
    from conrec.model.data.splits import cutoffs_for
    from conrec.model.data.visibility import EventLog
    from conrec.model.mf import MatrixFactorization, MFConfig

    seen = own_history_events(events, cutoffs_for(events, cutoff))
    log = EventLog.of(seen, item_ids)
    mf = MatrixFactorization(len(item_ids), MFConfig(factors=COLLABORATIVE_FACTORS))
    mf.fit_until(log, int(log.ts.max()) if len(log.ts) else 0)
    return np.column_stack([mf.item_factors, mf.item_bias]).astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def train_codebook(
    out: str | Path,
    *,
    data: str | Path | None = None,
    cfg: CodebookTraining | None = None,
) -> dict[str, Any]:
    """Train and write a codebook artifact for the items of a prepared-tables folder (None:
    ml-100k's); returns its quality metrics."""
    from conrec.codebook.embed import DEFAULT_ENCODER, MiniLMEncoder, embed_texts, load_precomputed
    from conrec.codebook.train import plot_history, train_rqvae, write_artifact
    from conrec.model.data.prepared import load_tables
    from conrec.model.data.tables import item_texts
    from conrec.model.pypi import cache_dir

    cfg = cfg or CodebookTraining()
    item_vectors, embeddings_path, cutoff = cfg.item_vectors, cfg.embeddings, cfg.cutoff
    tables = load_tables(data)
    source, items = tables.name, tables.items
    item_ids = items["item_id"].tolist()
    parts, names = [], []
    if item_vectors != "collaborative":
        if embeddings_path:
            text, name = load_precomputed(embeddings_path, item_ids), Path(embeddings_path).name
        else:
            text = embed_texts(item_texts(items), MiniLMEncoder(), cache_dir() / "embeddings")
            name = DEFAULT_ENCODER
        parts.append(text)
        names.append(name)
    if item_vectors != "text":
        parts.append(collaborative_vectors(tables.events, item_ids, cutoff))
        names.append(f"collaborative (factorisation, events up to each user's {cutoff} cutoff)")
    emb = parts[0] if len(parts) == 1 else np.hstack([_unit_rows(p) for p in parts])
    encoder_name = " + ".join(names)
    cold = 0
    if item_vectors == "collaborative":
        rated = np.linalg.norm(emb, axis=1) > 0
        cold = int((~rated).sum())
        emb, item_ids = emb[rated], [i for i, keep in zip(item_ids, rated, strict=True) if keep]
        log.info("%d items without feedback by the cutoff get no SID", cold)
    rqvae = replace(cfg.rqvae, in_dim=emb.shape[1])
    result = train_rqvae(emb, rqvae, cfg.training)
    version = write_artifact(
        out,
        result,
        item_ids,
        cfg.training,
        {"encoder": encoder_name, "dataset": source},
        geometry=cfg.geometry,
    )
    out_dir = Path(out)
    plot_history(result.history, result.metrics, out_dir / "training.png")
    metrics = {"codebook_version": version, **result.metrics, "items_without_sid": cold}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("codebook %s written to %s", version, out_dir)
    return metrics
