"""The `conrec` command line, run in-process through Typer's runner on real data."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from conrec.cli.main import app
from conrec.codebook.artifact import load_codebook, load_item_sids

runner = CliRunner()


def test_data_prepare_writes_tables_and_reports(ml100k_dir, tmp_path):
    result = runner.invoke(
        app, ["data", "prepare", "--data-path", str(ml100k_dir), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "17,480" in result.output
    assert "1998-04-22" in result.output  # the last event, for choosing a cutoff
    events = pd.read_parquet(tmp_path / "events.parquet")
    assert len(events) == 100_000
    assert len(pd.read_parquet(tmp_path / "items.parquet")) == 1682


def test_codebook_train_and_encode_on_a_platforms_catalogue(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"sku{i}" for i in range(300)]
    pd.DataFrame({"sku": [*ids, ""], "name": ["x"] * 301}).to_csv(tmp_path / "items.csv")
    pd.DataFrame({"who": ["u1", "u1"], "sku": ids[:2], "at": [1, 2], "fb": ["neg", "pos"]}).to_csv(
        tmp_path / "log.csv"
    )
    result = runner.invoke(
        app,
        [
            "data", "prepare", "--events", str(tmp_path / "log.csv"),
            "--items", str(tmp_path / "items.csv"), "--user-id", "who", "--item-id", "sku",
            "--ts", "at", "--polarity", "fb", "--title", "name", "--out", str(tmp_path / "data"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    emb = rng.normal(size=(300, 24)).astype(np.float32)
    np.savez(tmp_path / "emb.npz", item_ids=np.array(ids), embeddings=emb)
    out = tmp_path / "cb"
    result = runner.invoke(
        app,
        [
            "codebook", "train", "--data", str(tmp_path / "data"),
            "--embeddings", str(tmp_path / "emb.npz"),
            "--out", str(out), "--codebook-size", "8", "--latent-dim", "8", "--epochs", "20",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["items"] == 300
    assert (out / "training.png").stat().st_size > 10_000
    assert load_codebook(out).version == metrics["codebook_version"]
    assert load_item_sids(out).sid_of("sku7") is not None

    new = rng.normal(size=(5, 24)).astype(np.float32)
    np.savez(tmp_path / "new.npz", item_ids=np.array([f"new{i}" for i in range(5)]), embeddings=new)
    result = runner.invoke(
        app,
        [
            "codebook", "encode", "--artifact", str(out),
            "--embeddings", str(tmp_path / "new.npz"), "--out", str(tmp_path / "new_sids.npz"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "new_sids.npz") as npz:
        assert npz["codes"].shape == (5, 3)
        assert int(npz["codes"].max()) < 8


def test_a_folder_that_is_not_prepared_is_a_usage_error(tmp_path):
    for command in (
        ["codebook", "train"],
        ["batch-gen", "--model-dir", "m", "--codebook-dir", "c"],
    ):
        result = runner.invoke(app, [*command, "--data", str(tmp_path)])
        assert result.exit_code == 2
        assert "conrec data prepare --out" in result.output


def test_an_unmappable_file_is_one_clear_line_not_a_traceback(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,4.0,5\n")
    result = runner.invoke(
        app, ["data", "prepare", "--events", str(tmp_path / "ratings.csv"), "--rating", "rating",
              "--dislike-at-most", "2", "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "--user-id COLUMN, --item-id COLUMN, --ts COLUMN" in result.output
