"""Codebook versions side by side (`conrec.codebook.versions`) and new items joining a version's SID
table (`conrec.codebook.bulk.add_items`), on real files, through the library and `conrec
codebook`."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conrec.cli.main import app
from conrec.codebook.artifact import (
    ArtifactError,
    EncoderWeights,
    load_codebook,
    load_item_sids,
    save_artifact,
)
from conrec.codebook.bulk import BulkEncoder, add_items
from conrec.codebook.layout import CURRENT_FILE, current_dir, read_pointer, version_dir
from conrec.codebook.versions import list_versions, publish, set_current

DIM, LEVELS, SIZE = 6, 2, 8


def make_artifact(out: Path, seed: int, n_items: int = 20) -> tuple[str, np.ndarray]:
    """A random codebook (identity encoder) whose items are encoded like new ones; returns its
    version and the items' embeddings."""
    rng = np.random.default_rng(seed)
    codewords = rng.normal(size=(LEVELS, SIZE, DIM)).astype(np.float32)
    encoder = EncoderWeights((np.eye(DIM, dtype=np.float32),), (np.zeros(DIM, np.float32),))
    emb = rng.normal(size=(n_items, DIM)).astype(np.float32)
    save_artifact(out, codewords, encoder, [], np.zeros((0, LEVELS), np.uint16), {"seed": seed})
    codes, _ = BulkEncoder(load_codebook(out)).encode_new_items(emb, load_item_sids(out))
    ids = [f"i{i}" for i in range(n_items)]
    return save_artifact(out, codewords, encoder, ids, codes, {"seed": seed}), emb


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, str, Path, str]:
    a, b = tmp_path / "a", tmp_path / "b"
    version_a, _ = make_artifact(a, seed=1)
    version_b, _ = make_artifact(b, seed=2)
    assert version_a != version_b
    return a, version_a, b, version_b


def test_publish_keeps_versions_side_by_side_and_moves_the_pointer(two, tmp_path: Path) -> None:
    a, version_a, b, version_b = two
    root = tmp_path / "root"
    first = publish(a, root)
    assert (first.version, first.previous, first.added) == (version_a, None, True)
    assert read_pointer(root) == version_a
    assert current_dir(root) == version_dir(root, version_a)
    second = publish(b, root)
    assert (second.version, second.previous, second.added) == (version_b, version_a, True)
    assert (root / CURRENT_FILE).read_text() == f"{version_b}\n"
    # The loaders read the current version of a root; each version stays whole.
    assert load_codebook(root).version == version_b
    assert load_item_sids(root).codebook_version == version_b
    assert load_codebook(version_dir(root, version_a)).version == version_a
    listed = list_versions(root)
    assert [(v.version, v.current, v.items) for v in listed] == [
        (version_a, False, 20),
        (version_b, True, 20),
    ]
    # Publishing a version the root holds only moves the pointer back: a rollback.
    back = publish(version_dir(root, version_a), root)
    assert (back.version, back.previous, back.added) == (version_a, version_b, False)
    assert load_codebook(root).version == version_a
    assert not [p for p in root.rglob(".*")]  # no staging dirs or pointer temp files left


def test_a_plain_artifact_dir_is_a_single_version_root(two) -> None:
    a, version_a, b, version_b = two
    assert read_pointer(a) is None
    assert current_dir(a) == a
    assert [(v.version, v.current, v.path) for v in list_versions(a)] == [(version_a, True, a)]
    # Publishing into it adopts its artifact as a version; the top files stay for old readers.
    published = publish(b, a)
    assert (published.previous, read_pointer(a)) == (version_a, version_b)
    assert (a / "codebook.npz").is_file()
    assert load_codebook(a).version == version_b
    assert load_item_sids(version_dir(a, version_a)).codebook_version == version_a
    assert [v.version for v in list_versions(a) if not v.current] == [version_a]


def test_the_pointer_is_never_seen_half_written(two, tmp_path: Path) -> None:
    a, version_a, b, version_b = two
    root = tmp_path / "root"
    publish(a, root)
    publish(b, root)
    seen: set[str | None] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.add(read_pointer(root))
            except Exception as exc:  # an empty or partial pointer: what must not happen
                seen.add(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(300):
            set_current(root, version_a if i % 2 else version_b)
    finally:
        done.set()
        reader.join()
    assert seen <= {version_a, version_b}
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ArtifactError, match="has no version nope"):
        set_current(root, "nope")
    (root / CURRENT_FILE).write_text("../elsewhere\n")
    with pytest.raises(ArtifactError, match="does not name a version"):
        load_codebook(root)


def test_add_items_keeps_published_sids_adds_new_ones_and_is_idempotent(
    two, tmp_path: Path
) -> None:
    a, version_a, b, version_b = two
    root = tmp_path / "root"
    publish(a, root)
    publish(b, root)
    before = load_item_sids(root)
    rng = np.random.default_rng(3)
    new = rng.normal(size=(10, DIM)).astype(np.float32)
    ids = [f"new{i}" for i in range(10)] + ["i0", "i1", "new0"]  # 2 known, 1 repeated
    emb = np.concatenate([new, new[:3]])

    result = add_items(root, ids, emb)
    assert (result.codebook_version, result.table_version) == (version_b, 1)
    assert (result.added, result.skipped, result.items) == (10, 3, 30)
    after = load_item_sids(root)
    assert (after.codebook_version, after.table_version, len(after)) == (version_b, 1, 30)
    np.testing.assert_array_equal(after.codes[:20], before.codes)
    assert after.item_ids[:20].tolist() == before.item_ids.tolist()
    # New items took free SIDs: none shares one with a published item (or with each other).
    published = set(map(tuple, before.codes.tolist()))
    fresh = [after.sid_of(f"new{i}") for i in range(10)]
    assert result.unresolved + sum(sid not in published for sid in fresh) == 10
    assert len(set(fresh)) >= 10 - result.unresolved
    # The previous version's table is untouched; the codebook version is unchanged.
    assert len(load_item_sids(version_dir(root, version_a))) == 20
    assert load_codebook(root).version == version_b

    again = add_items(root, ids, emb)
    assert (again.added, again.skipped, again.table_version, again.items) == (0, 13, 1, 30)
    assert load_item_sids(root).table_version == 1


def test_commands_publish_list_and_add_items(two, tmp_path: Path) -> None:
    a, version_a, b, version_b = two
    root = tmp_path / "root"
    runner = CliRunner()
    for artifact in (a, b):
        result = runner.invoke(
            app, ["codebook", "publish", "--artifact", str(artifact), "--root", str(root)]
        )
        assert result.exit_code == 0, result.output
    assert f"codebook {version_b} (added) is current" in result.output
    new = tmp_path / "new.npz"
    rng = np.random.default_rng(4)
    np.savez(new, item_ids=np.array(["n1", "n2", "i3"]), embeddings=rng.normal(size=(3, DIM)))
    result = runner.invoke(
        app, ["codebook", "add-items", "--codebook", str(root), "--embeddings", str(new)]
    )
    assert result.exit_code == 0, result.output
    assert f"codebook {version_b} table 1: added 2, skipped 1 already present" in result.output
    result = runner.invoke(app, ["codebook", "versions", "--root", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"  {version_a}  items 20  table 0")
    assert lines[1].startswith(f"* {version_b}  items 22  table 1")
    result = runner.invoke(app, ["codebook", "versions", "--root", str(tmp_path / "none")])
    assert result.exit_code == 1
