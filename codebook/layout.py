"""Where a codebook root keeps its versions, and the error every artifact reader raises.

The base of the codebook package: ``conrec.codebook.artifact`` reads an artifact through
``current_dir``, and ``conrec.codebook.versions`` publishes and lists the versions this layout
describes::

    <root>/CURRENT                  the current codebook_version (one line)
    <root>/versions/<version>/      a full artifact: codebook.npz + item_sids.npz (+ reports)

A plain artifact directory (no ``CURRENT``) is a root with a single version: itself.
"""

from __future__ import annotations

from pathlib import Path

CURRENT_FILE = "CURRENT"
VERSIONS_DIR = "versions"


class ArtifactError(RuntimeError):
    """The artifact on disk is missing, corrupt or of an unsupported format version."""


def read_pointer(root: str | Path) -> str | None:
    """The version ``CURRENT`` names, or None for a plain artifact directory."""
    try:
        text = (Path(root) / CURRENT_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    if not text or "/" in text or text.startswith("."):
        raise ArtifactError(f"{Path(root) / CURRENT_FILE} does not name a version: {text!r}")
    return text


def version_dir(root: str | Path, version: str) -> Path:
    return Path(root) / VERSIONS_DIR / version


def current_dir(root: str | Path) -> Path:
    """The directory of the current artifact: the pointer's version, else ``root`` itself."""
    version = read_pointer(root)
    return Path(root) if version is None else version_dir(root, version)
