"""`conrec codebook ...`: train the RQ-VAE codebook and encode new items."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from conrec.cli.options import DataOption, config_options
from conrec.codebook.rqvae import RQVAEConfig
from conrec.codebook.train import TrainConfig
from conrec.codebook_training import CodebookTraining

app = typer.Typer(help="Semantic-ID codebook (RQ-VAE).", no_args_is_help=True)
console = Console()


@app.command()
@config_options(
    CodebookTraining,
    nested={"rqvae": (RQVAEConfig, ("in_dim", "hidden_dims")), "training": (TrainConfig, ())},
)
def train(
    cfg: CodebookTraining,
    out: str = typer.Option("runs/codebook", help="Artifact directory."),
    data: DataOption = None,
) -> None:
    """Embed the catalogue, train the RQ-VAE, write codebook.npz + item_sids.npz + a plot."""
    from conrec.codebook_training import train_codebook

    console.print_json(json.dumps(train_codebook(out, data=data, cfg=cfg)))


@app.command()
def encode(
    artifact: str = typer.Option(..., help="Codebook artifact directory."),
    embeddings: str = typer.Option(..., help=".npz with item_ids and embeddings of new items."),
    out: str = typer.Option(..., help="Output .npz: item_ids and codes [N, D]."),
    gpu: bool = typer.Option(False, help="Use faiss-gpu."),
) -> None:
    """Encode new items into SIDs with faiss, applying the collision policy against the table."""
    import numpy as np

    from conrec.codebook.artifact import load_codebook, load_item_sids
    from conrec.codebook.bulk import BulkEncoder

    with np.load(embeddings, allow_pickle=False) as npz:
        item_ids, emb = npz["item_ids"], npz["embeddings"]
    encoder = BulkEncoder(load_codebook(artifact), use_gpu=gpu)
    codes, unresolved = encoder.encode_new_items(emb, load_item_sids(artifact))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, item_ids=item_ids, codes=codes)
    console.print(f"encoded {len(codes)} items into {out} ({unresolved} unresolved collisions)")


@app.command("add-items")
def add_items(
    codebook: str = typer.Option(..., help="Codebook root (or plain artifact directory)."),
    embeddings: str = typer.Option(..., help=".npz with item_ids and embeddings of new items."),
    gpu: bool = typer.Option(False, help="Use faiss-gpu."),
) -> None:
    """Give new items SIDs in the current codebook version and add them to its item table.

    Existing items keep their SIDs; ids already in the table are skipped. The grown table is
    written atomically as the next table_version; a running service picks it up."""
    import numpy as np

    from conrec.codebook.bulk import add_items as add

    with np.load(embeddings, allow_pickle=False) as npz:
        item_ids, emb = npz["item_ids"].tolist(), npz["embeddings"]
    result = add(codebook, item_ids, emb, use_gpu=gpu)
    console.print(
        f"codebook {result.codebook_version} table {result.table_version}: added "
        f"{result.added}, skipped {result.skipped} already present, {result.unresolved} "
        f"unresolved collisions; {result.items} items",
        soft_wrap=True,
    )


@app.command()
def publish(
    artifact: str = typer.Option(..., help="Artifact directory (e.g. `codebook train --out`)."),
    root: str = typer.Option(..., help="Codebook root the service reads (CONREC_CODEBOOK_DIR)."),
) -> None:
    """Add an artifact to the root as a version and make it current; earlier versions stay.
    Publishing a version already in the root (e.g. ROOT/versions/<old>) only moves the
    pointer: that is a rollback."""
    from conrec.codebook.versions import publish as publish_version

    result = publish_version(artifact, root)
    what = "added" if result.added else "already present"
    console.print(
        f"codebook {result.version} ({what}) is current in {root}; was {result.previous}",
        soft_wrap=True,
    )


@app.command()
def versions(
    root: str = typer.Option(..., help="Codebook root (or plain artifact directory)."),
) -> None:
    """List the root's codebook versions, oldest first; `*` marks the current one."""
    from conrec.codebook.versions import list_versions

    found = list_versions(root)
    if not found:
        console.print(f"no codebook in {root}")
        raise typer.Exit(1)
    for v in found:
        mark = "*" if v.current else " "
        line = f"{mark} {v.version}  items {v.items}  table {v.table_version}  {v.path}"
        console.print(line, soft_wrap=True, highlight=False)
