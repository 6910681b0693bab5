"""`conrec codebook ...`: train the RQ-VAE codebook and encode new items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from conrec.commands.choices import CollisionPolicy, Source

app = typer.Typer(help="Semantic-ID codebook (RQ-VAE).", no_args_is_help=True)
console = Console()


@app.command()
def train(
    out: str = typer.Option("runs/codebook", help="Artifact directory."),
    dataset: Annotated[Source, typer.Option(help="The catalogue's source.")] = Source.ml100k,
    data_path: str | None = typer.Option(
        None, help="Folder (ml-100k), file (kuairand) or items CSV/Parquet (generic)."
    ),
    embeddings: str | None = typer.Option(
        None, help="Precomputed .npz (item_ids, embeddings) instead of the text encoder."
    ),
    levels: int = typer.Option(3, help="SID length D."),
    size: int = typer.Option(32, help="Codewords per level K."),
    latent_dim: int = typer.Option(32, help="Codeword width."),
    epochs: int = typer.Option(400, help="Training epochs."),
    collision_policy: Annotated[
        CollisionPolicy, typer.Option(help="Items sharing a greedy SID.")
    ] = CollisionPolicy.reassign,
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Embed the catalogue, train the RQ-VAE, write codebook.npz + item_sids.npz + a plot."""
    from conrec.codebook_training import train_codebook

    metrics = train_codebook(
        out,
        dataset=dataset.value,
        data_path=data_path,
        embeddings_path=embeddings,
        levels=levels,
        size=size,
        latent_dim=latent_dim,
        epochs=epochs,
        collision_policy=collision_policy.value,
        seed=seed,
    )
    console.print_json(json.dumps(metrics))


@app.command()
def encode(
    artifact: str = typer.Option(..., help="Codebook artifact directory."),
    embeddings: str = typer.Option(..., help=".npz with item_ids and embeddings of new items."),
    out: str = typer.Option(..., help="Output .npz: item_ids and codes [N, D]."),
    gpu: bool = typer.Option(False, help="Use faiss-gpu."),
) -> None:
    """Encode new items into SIDs with faiss, applying the collision policy against the table."""
    import numpy as np

    from codebook.artifact import load_codebook, load_item_sids
    from codebook.bulk import BulkEncoder

    with np.load(embeddings, allow_pickle=False) as npz:
        item_ids, emb = npz["item_ids"], npz["embeddings"]
    encoder = BulkEncoder(load_codebook(artifact), use_gpu=gpu)
    codes, unresolved = encoder.encode_new_items(emb, load_item_sids(artifact))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, item_ids=item_ids, codes=codes)
    console.print(f"encoded {len(codes)} items into {out} ({unresolved} unresolved collisions)")
