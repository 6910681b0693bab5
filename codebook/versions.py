"""Codebook versions side by side: publishing into a codebook root, listing it, moving its
``CURRENT`` pointer (the layout: ``conrec.codebook.layout``).

A retrained codebook changes every SID, while the prediction store still holds runs made with
the old one until the next nightly run. So a root keeps each published artifact whole, under its
content hash, and one pointer names the version new work should use. A plain artifact
directory (``codebook.npz`` at the top, as ``conrec codebook train`` writes) is a root with a
single version, so every reader takes either. Publishing into a plain directory
adopts its artifact as a version first; the files at its top stay (older readers keep reading
them) but the pointer wins from then on.

Numpy and the standard library only: the service reads roots through this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conrec.codebook.artifact import (
    CODEBOOK_FILE,
    ITEM_SIDS_FILE,
    Codebook,
    ItemSIDTable,
    load_codebook,
    load_item_sids,
)
from conrec.codebook.layout import (
    CURRENT_FILE,
    VERSIONS_DIR,
    ArtifactError,
    current_dir,
    read_pointer,
    version_dir,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    version: str
    path: Path
    items: int
    table_version: int
    current: bool


@dataclass(frozen=True)
class Published:
    version: str
    previous: str | None  # the version the pointer named before (None: there was none)
    added: bool  # False when the version was already in the root (only the pointer moved)


def list_versions(root: str | Path) -> list[VersionInfo]:
    """Every version in ``root``, oldest codebook first; one for a plain directory."""
    root = Path(root)
    pointer = read_pointer(root)
    if pointer is None:
        if not (root / CODEBOOK_FILE).is_file():
            return []
        return [_info(root, load_codebook(root).version, current=True)]
    folder = root / VERSIONS_DIR
    # By when each codebook was written: codebook.npz is never rewritten within a version
    # (the directory's own mtime moves whenever its item table grows).
    dirs = sorted(
        (d for d in folder.iterdir() if (d / CODEBOOK_FILE).is_file()),
        key=lambda d: ((d / CODEBOOK_FILE).stat().st_mtime, d.name),
    )
    return [_info(d, d.name, current=d.name == pointer) for d in dirs]


def _info(path: Path, version: str, current: bool) -> VersionInfo:
    table = load_item_sids(path)
    return VersionInfo(version, path, len(table), table.table_version, current)


def publish(artifact_dir: str | Path, root: str | Path) -> Published:
    """Copy the artifact at ``artifact_dir`` into ``root`` as a version and point ``CURRENT`` at
    it; earlier versions stay. A version already in the root is not overwritten (its SID table
    may have grown by ``add-items`` since): only the pointer moves, which is also how to roll
    back (``publish(root / "versions" / old, root)``)."""
    source, codebook, _ = load_current(artifact_dir)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    previous = read_pointer(root)
    if previous is None and (root / CODEBOOK_FILE).is_file():
        previous = _adopt_plain(root)
    target = version_dir(root, codebook.version)
    added = not target.is_dir()
    if added:
        _copy_dir(source, target)
    set_current(root, codebook.version)
    logger.info("codebook %s is current in %s (was %s)", codebook.version, root, previous)
    return Published(codebook.version, previous, added)


def set_current(root: str | Path, version: str) -> None:
    """Point ``CURRENT`` at a version already in ``root``, atomically (write, then rename)."""
    root = Path(root)
    if not (version_dir(root, version) / CODEBOOK_FILE).is_file():
        raise ArtifactError(f"{root} has no version {version}")
    fd, tmp = tempfile.mkstemp(prefix=f".{CURRENT_FILE}.", dir=root)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        # A reader sees the old pointer or the new one, never a partly written file.
        os.replace(tmp, root / CURRENT_FILE)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _adopt_plain(root: Path) -> str:
    """Turn a plain artifact directory into a root whose one version is its artifact."""
    version = load_codebook(root).version
    target = version_dir(root, version)
    if not target.is_dir():
        _copy_dir(root, target, skip=frozenset({VERSIONS_DIR, CURRENT_FILE}))
    set_current(root, version)
    return version


def _copy_dir(source: Path, target: Path, skip: frozenset[str] = frozenset()) -> None:
    # Copied under a hidden name, then renamed: a version directory is complete or absent.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for entry in source.iterdir():
            if entry.name in skip or entry.name.startswith("."):
                continue
            if entry.is_dir():
                shutil.copytree(entry, staging / entry.name)
            else:
                shutil.copy2(entry, staging / entry.name)
        if not (staging / ITEM_SIDS_FILE).is_file():
            raise ArtifactError(f"no item -> SID table in {source}")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_current(root: str | Path) -> tuple[Path, Codebook, ItemSIDTable]:
    """The current artifact's directory, codebook and item table, resolved once (so a pointer
    moved in between cannot pair one version's codebook with another's table)."""
    path = current_dir(root)
    codebook, table = load_codebook(path), load_item_sids(path)
    check_pair(path, codebook, table)
    return path, codebook, table


def check_pair(path: Path, codebook: Codebook, table: ItemSIDTable) -> None:
    """Refuse an item table made for another codebook than the one beside it."""
    if table.codebook_version != codebook.version:
        raise ArtifactError(
            f"{path}: item -> SID table is for codebook {table.codebook_version}, "
            f"the codebook is {codebook.version}"
        )
