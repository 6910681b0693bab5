"""The codebook artifact: its on-disk format and the numpy-only reader.

This module owns the artifact contract. It imports numpy only, so the filter service and the
GRPO reward can decode semantic IDs (SIDs) without torch.

Layout of an artifact directory::

    codebook.npz    codewords [D, K, latent], encoder MLP weights, meta (JSON)
    item_sids.npz   item_ids [N] (unicode), codes [N, D] (uint16), codebook_version,
                    table_version (int; absent in older files, read as 0)

``codebook_version`` is a content hash of the codewords, so any two artifacts with the same
version decode every SID to the same vector; the prediction store records it next to each run.
Within a codebook version the item table only grows (new items join, no SID ever changes);
each rewrite increments ``table_version``.

The loaders also take a versioned codebook root (``conrec.codebook.layout``) and read its current
version.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress, repeat
from pathlib import Path
from typing import Any

import numpy as np

from conrec.codebook.layout import ArtifactError, current_dir

FORMAT_VERSION = 1
CODEBOOK_FILE = "codebook.npz"
ITEM_SIDS_FILE = "item_sids.npz"


class InvalidSIDError(ValueError):
    """Codes that do not name a codeword of this codebook (wrong shape, out of range)."""


@dataclass(frozen=True)
class EncoderWeights:
    """The RQ-VAE encoder MLP as plain arrays, for torch-free encoding of new items."""

    weights: tuple[np.ndarray, ...]  # each [out, in], torch.nn.Linear layout
    biases: tuple[np.ndarray, ...]  # each [out]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Map item embeddings [N, in_dim] to latents [N, latent_dim] (ReLU between layers)."""
        h = np.asarray(x, dtype=np.float32)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w.T + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h


def codebook_version(codewords: np.ndarray) -> str:
    """Content hash naming a set of codewords (first 12 hex digits of sha256)."""
    data = np.ascontiguousarray(codewords, dtype=np.float32)
    digest = hashlib.sha256(str(data.shape).encode() + data.tobytes()).hexdigest()
    return digest[:12]


@dataclass
class Codebook:
    """Decodes and validates SIDs. Immutable after load; safe to share between threads."""

    codewords: np.ndarray  # [D, K, latent] float32
    meta: dict[str, Any] = field(default_factory=dict)
    encoder: EncoderWeights | None = None

    def __post_init__(self) -> None:
        self.codewords = np.ascontiguousarray(self.codewords, dtype=np.float32)
        if self.codewords.ndim != 3:
            shape = self.codewords.shape
            raise ArtifactError(f"codewords must be [levels, size, dim], got {shape}")
        self.codewords.setflags(write=False)
        self.version = self.meta.get("codebook_version") or codebook_version(self.codewords)

    @property
    def levels(self) -> int:
        return self.codewords.shape[0]

    @property
    def size(self) -> int:
        return self.codewords.shape[1]

    @property
    def dim(self) -> int:
        return self.codewords.shape[2]

    def validate(self, codes: Any) -> np.ndarray:
        """Return ``codes`` as int64 [..., D], or raise InvalidSIDError saying what is wrong."""
        try:
            arr = np.asarray(codes)
        except (TypeError, ValueError) as exc:
            raise InvalidSIDError(f"SID codes are not an integer array: {exc}") from exc
        if arr.size == 0:
            raise InvalidSIDError("SID codes are empty")
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)):
                arr = arr.astype(np.int64)
            else:
                raise InvalidSIDError(f"SID codes must be integers, got dtype {arr.dtype}")
        if arr.ndim == 0 or arr.shape[-1] != self.levels:
            raise InvalidSIDError(
                f"a SID has {self.levels} codes (one per level), got shape {arr.shape}"
            )
        arr = arr.astype(np.int64, copy=False)
        bad = (arr < 0) | (arr >= self.size)
        if bad.any():
            where = np.argwhere(bad)[0]
            raise InvalidSIDError(
                f"SID code {int(arr[tuple(where)])} at level {int(where[-1])} is out of range "
                f"[0, {self.size})"
            )
        return arr

    def decode(self, codes: Any, *, validate: bool = True) -> np.ndarray:
        """Reconstructed latents X-hat = sum of the chosen codewords: [..., D] -> [..., dim]."""
        arr = self.validate(codes) if validate else np.asarray(codes, dtype=np.int64)
        # Adding level by level avoids materialising [..., D, dim] and then reducing it, on the
        # service's hot path; `take` gathers rows faster than fancy indexing.
        out = self.codewords[0].take(arr[..., 0], axis=0)
        for level in range(1, self.levels):
            out += self.codewords[level].take(arr[..., level], axis=0)
        return out

    def decode_normalized(self, codes: Any, *, validate: bool = True) -> np.ndarray:
        """Decoded latents scaled to unit L2 norm, ready for cosine similarity."""
        vecs = self.decode(codes, validate=validate)
        norms = np.linalg.norm(vecs, axis=-1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)

    @cached_property
    def gram(self) -> CodewordGram:
        """Dot products between codewords, for norms of decoded SIDs without decoding them.
        Computed on first use (levels^2 / 2 x size^2 floats): the filter needs them, the reward
        and the reports do not."""
        return CodewordGram.of(self.codewords)

    def squared_norms(self, codes: np.ndarray) -> np.ndarray:
        """Squared L2 norms of the decoded SIDs, [..., D] valid int codes -> [...] float32:
        ``|sum_d c_d|^2 = sum_d |c_d|^2 + 2 sum_{d<e} c_d . c_e`` from the cached Gram tables,
        so equal to ``(self.decode(codes) ** 2).sum(-1)`` up to float32 rounding."""
        gram = self.gram
        arr = np.asarray(codes, dtype=np.int64)
        out = gram.squares[0].take(arr[..., 0])
        for level in range(1, self.levels):
            out += gram.squares[level].take(arr[..., level])
        for (d, e), table in gram.cross.items():
            out += table.take(arr[..., d] * self.size + arr[..., e])
        return out


@dataclass(frozen=True)
class CodewordGram:
    """``squares[d][i] = |codewords[d][i]|^2``; ``cross[(d, e)]`` (d < e) is
    ``2 codewords[d] @ codewords[e].T`` flattened to [size * size] (index ``i * size + j``)."""

    squares: np.ndarray  # [D, size] float32
    cross: dict[tuple[int, int], np.ndarray]

    @classmethod
    def of(cls, codewords: np.ndarray) -> CodewordGram:
        wide = codewords.astype(np.float64)
        squares = (wide**2).sum(-1).astype(np.float32)
        levels = codewords.shape[0]
        cross = {
            (d, e): (2.0 * wide[d] @ wide[e].T).astype(np.float32).ravel()
            for d in range(levels)
            for e in range(d + 1, levels)
        }
        for table in (squares, *cross.values()):
            table.setflags(write=False)
        return cls(squares, cross)


@dataclass
class ItemSIDTable:
    """The catalogue's item id -> SID mapping written next to the codebook."""

    item_ids: np.ndarray  # [N] unicode
    codes: np.ndarray  # [N, D] uint16
    codebook_version: str
    table_version: int = 0

    def __post_init__(self) -> None:
        self._index = {str(item): row for row, item in enumerate(self.item_ids.tolist())}

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._index

    def rows_of(self, item_ids: list[str]) -> np.ndarray:
        """Each id's row in the table, -1 for an id it does not hold: [M] int64. The lookups
        run at C speed (``map`` over the dict's ``get``): the filter's item-id path."""
        return np.fromiter(
            map(self._index.get, item_ids, repeat(-1)), dtype=np.int64, count=len(item_ids)
        )

    def lookup(self, item_ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """Codes [len(found), D] for the known ids and the list of unknown ids."""
        names = [str(item) for item in item_ids]
        rows = self.rows_of(names)
        found = rows >= 0
        missing = list(compress(names, (~found).tolist()))
        return self.codes[rows[found]], missing

    @cached_property
    def _sid_keys(self) -> tuple[np.ndarray, np.ndarray, int] | None:
        """The table's SIDs as sorted mixed-radix keys, their rows and the radix; None when two
        items share a SID (the `allow` collision policy) or the keys would overflow int64."""
        codes = self.codes.astype(np.int64)
        base = int(codes.max(initial=0)) + 1
        if not len(codes) or base ** codes.shape[1] >= 2**63:
            return None
        keys = codes @ (base ** np.arange(codes.shape[1] - 1, -1, -1, dtype=np.int64))
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        if (ordered[1:] == ordered[:-1]).any():
            return None
        return ordered, order, base

    def rows_of_codes(self, codes: np.ndarray) -> np.ndarray | None:
        """The row holding each SID of ``codes`` [M, D] (-1 for a SID the table lacks), found by
        a binary search over the table's sorted SIDs: a vectorised lookup for bodies that carry
        SIDs. None when the table cannot answer by SID (shared SIDs): look up by id then."""
        index = self._sid_keys
        if index is None:
            return None
        ordered, order, base = index
        codes = np.asarray(codes, dtype=np.int64)
        # A code beyond every code of the table names no item in it (and would alias a key);
        # looked for row by row only when there is one, since that costs more than the search.
        outside = None
        if len(codes) and int(codes.max()) >= base:
            outside = (codes >= base).any(axis=1)
            codes = np.minimum(codes, base - 1)
        keys = codes @ (base ** np.arange(codes.shape[1] - 1, -1, -1, dtype=np.int64))
        at = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
        found = ordered[at] == keys
        if outside is not None:
            found &= ~outside
        return np.where(found, order[at], -1)

    def sid_of(self, item_id: str) -> tuple[int, ...] | None:
        row = self._index.get(str(item_id))
        return None if row is None else tuple(int(c) for c in self.codes[row])

    def items_by_sid(self) -> dict[tuple[int, ...], list[str]]:
        """Inverse mapping; a list because a collision policy of 'allow' may share a SID."""
        out: dict[tuple[int, ...], list[str]] = {}
        for item, codes in zip(self.item_ids.tolist(), self.codes.tolist(), strict=True):
            out.setdefault(tuple(codes), []).append(str(item))
        return out


def save_artifact(
    out_dir: str | Path,
    codewords: np.ndarray,
    encoder: EncoderWeights,
    item_ids: list[str] | np.ndarray,
    codes: np.ndarray,
    meta: dict[str, Any],
) -> str:
    """Write codebook.npz and item_sids.npz atomically; return the codebook version."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    codewords = np.ascontiguousarray(codewords, dtype=np.float32)
    version = codebook_version(codewords)
    if codes.ndim != 2 or codes.shape[1] != codewords.shape[0]:
        raise ValueError(f"codes must be [N, {codewords.shape[0]}], got {codes.shape}")
    if codes.size and int(codes.max()) >= codewords.shape[1]:
        raise ValueError("codes exceed the codebook size")
    full_meta = {**meta, "format_version": FORMAT_VERSION, "codebook_version": version}
    arrays: dict[str, np.ndarray] = {
        "codewords": codewords,
        "meta": np.array(json.dumps(full_meta, sort_keys=True)),
    }
    for i, (w, b) in enumerate(zip(encoder.weights, encoder.biases, strict=True)):
        arrays[f"encoder_w{i}"] = np.asarray(w, dtype=np.float32)
        arrays[f"encoder_b{i}"] = np.asarray(b, dtype=np.float32)
    atomic_savez(out / CODEBOOK_FILE, arrays)
    save_item_sids(
        out,
        ItemSIDTable(
            np.asarray([str(i) for i in item_ids], dtype=np.str_),
            np.asarray(codes, dtype=np.uint16),
            version,
        ),
    )
    return version


def save_item_sids(artifact_dir: str | Path, table: ItemSIDTable) -> None:
    """Write the item -> SID table atomically (a hot-reloading service sees old or new)."""
    atomic_savez(
        Path(artifact_dir) / ITEM_SIDS_FILE,
        {
            "item_ids": np.asarray(table.item_ids, dtype=np.str_),
            "codes": np.asarray(table.codes, dtype=np.uint16),
            "codebook_version": np.array(table.codebook_version),
            "table_version": np.array(table.table_version, dtype=np.int64),
        },
    )


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz then rename it into place: a reader (or a hot-reloading service) never
    sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def artifact_file(artifact_dir: str | Path, name: str) -> Path:
    """The file `name` of an artifact folder, or of a codebook root's current version."""
    return current_dir(artifact_dir) / name


def load_codebook(artifact_dir: str | Path) -> Codebook:
    """Load codewords, meta and encoder weights; raises ArtifactError with the reason."""
    path = artifact_file(artifact_dir, CODEBOOK_FILE)
    if not path.is_file():
        raise ArtifactError(f"no codebook artifact at {path} (run `conrec codebook train`)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            codewords = npz["codewords"]
            n_layers = sum(1 for key in npz.files if key.startswith("encoder_w"))
            encoder = EncoderWeights(
                tuple(npz[f"encoder_w{i}"] for i in range(n_layers)),
                tuple(npz[f"encoder_b{i}"] for i in range(n_layers)),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"cannot read codebook artifact {path}: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has format version {meta.get('format_version')}, this reader supports "
            f"{FORMAT_VERSION}"
        )
    return Codebook(codewords, meta, encoder if n_layers else None)


def load_item_sids(artifact_dir: str | Path) -> ItemSIDTable:
    path = artifact_file(artifact_dir, ITEM_SIDS_FILE)
    if not path.is_file():
        raise ArtifactError(f"no item -> SID table at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            table_version = int(npz["table_version"]) if "table_version" in npz.files else 0
            return ItemSIDTable(
                npz["item_ids"], npz["codes"], str(npz["codebook_version"]), table_version
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"cannot read item -> SID table {path}: {exc}") from exc
