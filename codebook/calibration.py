"""The calibrated score's artifact: per-item features and the small model that maps a candidate's
features to P(dislike). numpy only: the filter service, the batch job and the evaluation read it.

A candidate's features (`FEATURES`), for a user with a prediction:

    prior_lift       the item's smoothed share of negatives among its feedback, minus the
                     catalogue's share at the same cutoff
    log_feedback     log(1 + the item's feedback events)
    user_dislike     the user's smoothed share of negatives among their feedback
    mf               the biased factorisation's predicted rating (-1 neg .. +1 pos) less its
                     global mean: b_u + b_i + p_u . q_i
    max_cosine       the served score: max cosine to the user's predicted SIDs
    prefix_depth     the longest SID prefix the candidate shares with a predicted SID (0..D)

`prior_lift` and `mf` are relative to the catalogue at the cutoff because its share of negatives
drifts (on ml-100k from 0.145 at the validation cutoffs to 0.169 at the test cutoffs): absolute,
they move every item's score with it, and a threshold chosen on an earlier split drops more
positives later.

The per-item parts (`prior_lift`, `log_feedback`, the item's factors and bias) live in the artifact,
refreshed by each nightly run; the per-user parts (`user_dislike`, the user's factors and bias:
`USER_LAYOUT`) ride with the user's prediction in the store. An item the artifact does not know
(newer than its run) takes the mean features of the known items sharing its first SID code, and
no factors. A user without a prediction has no per-user part: their candidates are scored by the
second model, fitted on the item features alone.

Layout: ``calibration.npz`` in a codebook version's folder (beside codebook.npz), holding a JSON
``meta`` (format_version, version: a content hash, codebook_version, features, created_at and
how it was fitted) and the arrays below. A file made for another codebook version is refused.
Format 1 (absolute prior and rating, with the rating's mean `mf_mean`) is read and scores as it
was fitted: its items keep their absolute priors, and the mean moves into the model's centring.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conrec.codebook.artifact import ArtifactError, ItemSIDTable, artifact_file, atomic_savez

FORMAT_VERSION = 2
READABLE_FORMATS = (1, FORMAT_VERSION)
CALIBRATION_FILE = "calibration.npz"
FEATURES = ("prior_lift", "log_feedback", "user_dislike", "mf", "max_cosine", "prefix_depth")
PRIOR_LIFT, LOG_FEEDBACK, USER_DISLIKE, MF, MAX_COSINE, PREFIX_DEPTH = range(len(FEATURES))
ITEM_FEATURES = FEATURES[:2]


def user_layout(factors: int) -> tuple[str, ...]:
    """The per-user features stored with a prediction: [user_dislike, mf_bias, mf_0..]."""
    return ("user_dislike", "mf_bias", *(f"mf_{i}" for i in range(factors)))


@dataclass(frozen=True)
class LogisticModel:
    """P(dislike) = sigmoid(intercept + weights . (x - mean) / scale)."""

    weights: np.ndarray  # [f]
    intercept: float
    mean: np.ndarray  # [f]
    scale: np.ndarray  # [f]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """[M, f] features -> [M] probabilities (float32)."""
        z = ((x - self.mean) / self.scale) @ self.weights + self.intercept
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def shifted(self, column: int, offset: float) -> LogisticModel:
        """The same model for inputs whose `column` reads `offset` less (x - offset)."""
        mean = np.array(self.mean, dtype=np.float64)
        mean[column] -= offset
        return dataclasses.replace(self, mean=mean)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}_weights": np.asarray(self.weights, np.float64),
            f"{prefix}_intercept": np.asarray(self.intercept, np.float64),
            f"{prefix}_mean": np.asarray(self.mean, np.float64),
            f"{prefix}_scale": np.asarray(self.scale, np.float64),
        }

    @classmethod
    def read(cls, npz: Any, prefix: str) -> LogisticModel:
        return cls(
            npz[f"{prefix}_weights"],
            float(npz[f"{prefix}_intercept"]),
            npz[f"{prefix}_mean"],
            npz[f"{prefix}_scale"],
        )


@dataclass(frozen=True)
class Calibration:
    meta: dict[str, Any]
    item_ids: np.ndarray  # [N]
    item_features: np.ndarray  # [N, 2] prior_lift, log_feedback
    prefix_features: np.ndarray  # [size, 2] by first SID code, for items it does not know
    mf_items: np.ndarray  # [N, F + 1] factors, then bias
    full: LogisticModel  # on FEATURES
    items_only: LogisticModel  # on ITEM_FEATURES

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def codebook_version(self) -> str:
        return self.meta["codebook_version"]

    @property
    def factors(self) -> int:
        return self.mf_items.shape[1] - 1

    def aligned(self, table: ItemSIDTable) -> AlignedItems:
        """The per-item parts for each row of `table`: an item the artifact does not know takes
        its first SID code's mean features and no factors."""
        if table.codebook_version != self.codebook_version:
            raise ArtifactError(
                f"calibration {self.version} is for codebook {self.codebook_version}, the item "
                f"table is for {table.codebook_version}"
            )
        rows = table.rows_of(self.item_ids.tolist())  # artifact item -> table row
        features = self.prefix_features[table.codes[:, 0].astype(np.int64)].copy()
        mf = np.zeros((len(table), self.mf_items.shape[1]), np.float32)
        known = rows >= 0
        features[rows[known]] = self.item_features[known]
        mf[rows[known]] = self.mf_items[known]
        return AlignedItems.of(self, features.astype(np.float32), mf)


@dataclass(frozen=True)
class AlignedItems:
    """A calibration's per-item parts in the order of one item table's rows, with the models'
    standardisation and weights folded in, so that a request costs a gather, a [M, F] x [F]
    product and a few vector operations: for the full model,

        z = item_term[row] + factors[row] . p_u + user part + w_cos * cos + w_depth * depth

    where item_term holds the prior lift's, the feedback's and the item bias's parts, and the user
    part the intercept's, the dislike rate's and the user bias's (see `LogisticModel`)."""

    calibration: Calibration
    features: np.ndarray  # [N, 2] prior_lift, log_feedback
    mf: np.ndarray  # [N, F + 1] factors, then bias
    weights: np.ndarray  # [6] the full model's weights per raw unit of each feature
    intercept: float  # the full model's intercept on raw features
    item_term: np.ndarray  # [N] the full model's per-item part of z
    prefix_term: np.ndarray  # [size] the same for an item known only by its first SID code
    factors: np.ndarray  # [N, F] item factors times the rating's weight
    items_only_term: np.ndarray  # [N] the items-only model's z
    items_only_prefix: np.ndarray  # [size]

    @classmethod
    def of(cls, cal: Calibration, features: np.ndarray, mf: np.ndarray) -> AlignedItems:
        w = cal.full.weights / cal.full.scale
        wi = cal.items_only.weights / cal.items_only.scale
        items_only_intercept = cal.items_only.intercept - float(cal.items_only.mean @ wi)

        def item_part(x: np.ndarray, bias: np.ndarray | float) -> np.ndarray:
            z = x[:, PRIOR_LIFT] * w[PRIOR_LIFT] + x[:, LOG_FEEDBACK] * w[LOG_FEEDBACK]
            z += bias * w[MF]
            return z.astype(np.float32)

        return cls(
            cal,
            features,
            mf,
            weights=w,
            intercept=cal.full.intercept - float(cal.full.mean @ w),
            item_term=item_part(features, mf[:, -1]),
            prefix_term=item_part(cal.prefix_features, 0.0),
            factors=(mf[:, :-1] * w[MF]).astype(np.float32),
            items_only_term=(features @ wi + items_only_intercept).astype(np.float32),
            items_only_prefix=(cal.prefix_features @ wi + items_only_intercept).astype(np.float32),
        )

    def score(
        self,
        rows: np.ndarray,
        first_codes: np.ndarray,
        max_cosine: np.ndarray | None = None,
        depth: np.ndarray | None = None,
        user: np.ndarray | None = None,
    ) -> np.ndarray:
        """P(dislike) of M candidates: `rows` in the table (-1: unknown, then `first_codes`,
        their first SID code, give the prefix features). With a prediction, `max_cosine`,
        `depth` and `user` (its per-user features, `user_layout`) are given: the full model;
        without, the items-only model."""
        known = rows >= 0
        everyone = bool(known.all())  # the usual case: no prefix features to mix in
        at = rows if everyone else np.maximum(rows, 0)
        if user is None:
            z = self.items_only_term[at]
            return _sigmoid(
                z if everyone else np.where(known, z, self.items_only_prefix[first_codes])
            )
        w = self.weights
        user_part = self.intercept + w[USER_DISLIKE] * float(user[0]) + w[MF] * float(user[1])
        # `take` gathers rows several times faster than fancy indexing; the weights are taken
        # as Python floats so that float32 stays float32.
        z = self.factors.take(at, axis=0) @ user[2:]
        z += self.item_term.take(at)
        if not everyone:
            z = np.where(known, z, self.prefix_term[first_codes])
        z += user_part
        z += float(w[MAX_COSINE]) * max_cosine
        z += float(w[PREFIX_DEPTH]) * depth
        return _sigmoid(z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) as float32, in place where z is a float32 array of its own."""
    z = np.asarray(z, dtype=np.float32)
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    return np.reciprocal(z, out=z)


def prefix_depth(candidates: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """[M, D], [K, D] codes -> [M]: the most leading levels a candidate shares with one
    prediction (`PredictedPrefixes`, built for this one call)."""
    if not len(predictions) or not len(candidates):
        return np.zeros(len(candidates), np.float32)
    base = int(max(candidates.max(), predictions.max())) + 1
    return PredictedPrefixes.of(predictions, base).depth(candidates)


@dataclass(frozen=True, eq=False)
class PredictedPrefixes:
    """A prediction's SID prefixes, arranged once so that each request's candidates are only
    looked up in them (the filter keeps them with the user's cached prediction).

    Only the candidates whose first code starts a predicted SID (a table lookup) are looked at
    further: few of them on a large codebook. Their prefixes, packed level by level into one
    integer each (as the item table packs SIDs), are searched among the predictions' sorted
    prefixes of the same length; a prefix shared at one level is shared at every level above
    it, so the count of levels found is the depth. A codebook whose SIDs do not fit an int64
    packed compares the candidates' codes with the predictions' instead."""

    first: np.ndarray  # [base] bool: a predicted SID starts with this code
    base: int  # every code is below it
    # Per prefix length 2..D: the predictions' prefixes packed, sorted; or, for SIDs that do
    # not pack, the predicted SIDs themselves [K, D].
    packed: tuple[np.ndarray, ...] | None = None
    codes: np.ndarray | None = None

    @classmethod
    def of(cls, predictions: np.ndarray, base: int) -> PredictedPrefixes:
        codes = np.asarray(predictions, dtype=np.int64)
        first = np.zeros(base, bool)
        first[codes[:, 0]] = True
        if base ** codes.shape[1] >= 2**63:
            return cls(first, base, codes=codes)
        packed, prefix = [], codes[:, 0]
        for level in range(1, codes.shape[1]):
            prefix = prefix * base + codes[:, level]
            packed.append(np.sort(prefix))  # repeats do not matter to a search
        return cls(first, base, packed=tuple(packed))

    @property
    def nbytes(self) -> int:
        kept = (self.first, *(self.packed or ()), self.codes)
        return sum(a.nbytes for a in kept if a is not None)

    def depth(self, candidates: np.ndarray) -> np.ndarray:
        """[M, D] codes, each below ``base`` -> [M] float32 depths."""
        depth = np.zeros(len(candidates), np.float32)
        at = np.flatnonzero(self.first.take(candidates[:, 0]))
        if not len(at):
            return depth
        sub = candidates.take(at, axis=0).astype(np.int64, copy=False)
        if self.packed is None:
            shared = np.cumprod(sub[:, None, :] == self.codes[None, :, :], axis=2)
            depth[at] = shared.sum(axis=2).max(axis=1)
            return depth
        found = np.ones(len(at), np.float32)
        prefix = sub[:, 0]
        for level, ordered in enumerate(self.packed, start=1):
            prefix = prefix * self.base + sub[:, level]
            i = np.searchsorted(ordered, prefix)
            np.minimum(i, len(ordered) - 1, out=i)
            found += ordered.take(i) == prefix
        depth[at] = found
        return depth


def save_calibration(
    artifact_dir: str | Path,
    *,
    codebook_version: str,
    item_ids: np.ndarray,
    item_features: np.ndarray,
    prefix_features: np.ndarray,
    mf_items: np.ndarray,
    full: LogisticModel,
    items_only: LogisticModel,
    meta: dict[str, Any],
) -> str:
    """Write calibration.npz atomically into a codebook version's folder; return its version."""
    arrays = {
        "item_ids": np.asarray(item_ids, dtype=np.str_),
        "item_features": np.asarray(item_features, np.float32),
        "prefix_features": np.asarray(prefix_features, np.float32),
        "mf_items": np.asarray(mf_items, np.float32),
        **full.arrays("full"),
        **items_only.arrays("items_only"),
    }
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
    version = digest.hexdigest()[:12]
    full_meta = {
        **meta,
        "format_version": FORMAT_VERSION,
        "version": version,
        "codebook_version": codebook_version,
        "features": list(FEATURES),
        "items_only_features": list(ITEM_FEATURES),
        "created_at": time.time(),
    }
    arrays["meta"] = np.array(json.dumps(full_meta, sort_keys=True))
    folder = Path(artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_savez(folder / CALIBRATION_FILE, arrays)
    return version


def load_calibration(artifact_dir: str | Path) -> Calibration:
    """The calibration of a codebook folder or root's current version; ArtifactError says why
    it cannot be used (absent, corrupt, another format)."""
    path = artifact_file(artifact_dir, CALIBRATION_FILE)
    if not path.is_file():
        raise ArtifactError(f"no calibration at {path} (`conrec evaluate` writes one)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("format_version") not in READABLE_FORMATS:
                raise ArtifactError(
                    f"{path} has format version {meta.get('format_version')}, this reader "
                    f"supports {list(READABLE_FORMATS)}"
                )
            full = LogisticModel.read(npz, "full")
            if meta["format_version"] == 1:  # its model saw the rating with its mean
                full = full.shifted(MF, float(npz["mf_mean"]))
            cal = Calibration(
                meta=meta,
                item_ids=npz["item_ids"],
                item_features=npz["item_features"],
                prefix_features=npz["prefix_features"],
                mf_items=npz["mf_items"],
                full=full,
                items_only=LogisticModel.read(npz, "items_only"),
            )
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read calibration {path}: {exc}") from exc
    _check(cal, path)
    return cal


def _check(cal: Calibration, path: Path) -> None:
    n = len(cal.item_ids)
    shapes = {
        "item_features": (cal.item_features.shape, (n, len(ITEM_FEATURES))),
        "mf_items": (cal.mf_items.shape[:1], (n,)),
        "full weights": (cal.full.weights.shape, (len(FEATURES),)),
        "items_only weights": (cal.items_only.weights.shape, (len(ITEM_FEATURES),)),
    }
    for name, (got, want) in shapes.items():
        if tuple(got) != want:
            raise ArtifactError(f"{path}: {name} has shape {tuple(got)}, expected {want}")
    if not all(np.isfinite(a).all() for a in (cal.item_features, cal.mf_items, cal.full.weights)):
        raise ArtifactError(f"{path}: non-finite values")
