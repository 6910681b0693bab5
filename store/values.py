"""What the store holds: a run's metadata and each user's packed value (see ``store``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

CODE_DTYPE = np.dtype("<u2")
FEATURE_DTYPE = np.dtype("<f4")


class StoreError(RuntimeError):
    """A stored value or a write that does not match the store's contract."""


@dataclass(frozen=True)
class RunMeta:
    """What a published run records next to its predictions (and in the pointer)."""

    run_id: str
    created_at: float  # unix seconds, when the run began writing
    codebook_version: str
    model_version: str
    k: int
    d: int
    ttl_s: int
    user_count: int = 0
    # Float32 user features after each user's codes; 0 in runs written without them.
    user_features: int = 0
    # The calibration artifact those features were made for ("" without features).
    calibration_version: str = ""

    @property
    def value_bytes(self) -> int:
        return self.k * self.d * CODE_DTYPE.itemsize + self.user_features * FEATURE_DTYPE.itemsize

    @property
    def expires_at(self) -> float:
        """When the run's first-written user keys expire: after that it is no longer whole."""
        return self.created_at + self.ttl_s

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> RunMeta:
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"run metadata is not valid: {exc}") from exc


@dataclass(frozen=True)
class Prediction:
    """One user's predicted SIDs from the run named by ``version``."""

    codes: np.ndarray  # [K, D] uint16
    version: str
    created_at: float
    codebook_version: str
    # The calibrated score's per-user part, and the calibration it was made for (None / "").
    user_features: np.ndarray | None = None
    calibration_version: str = ""


def pack_codes(codes: np.ndarray) -> bytes:
    """[..., K, D] codes -> little-endian uint16 bytes; raises StoreError if a code won't fit."""
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iu":
        raise StoreError(f"codes must be integers, got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(CODE_DTYPE).max):
        raise StoreError("codes must fit in uint16")
    return np.ascontiguousarray(arr, dtype=CODE_DTYPE).tobytes()


def pack_values(codes: np.ndarray, features: np.ndarray | None) -> bytes:
    """[N, K, D] codes and [N, F] features (or None) -> N values back to back."""
    packed = pack_codes(codes)
    if features is None:
        return packed
    codes_per_user = len(packed) // max(len(codes), 1)
    rows = np.frombuffer(packed, np.uint8).reshape(len(codes), codes_per_user)
    floats = np.ascontiguousarray(features, dtype=FEATURE_DTYPE)
    return np.hstack([rows, floats.view(np.uint8).reshape(len(codes), -1)]).tobytes()


def unpack_value(value: bytes, run: RunMeta) -> tuple[np.ndarray, np.ndarray | None]:
    """One user's value -> ([K, D] codes, [F] features or None) in the run's value format."""
    if len(value) != run.value_bytes:
        raise StoreError(
            f"a prediction of run {run.run_id} holds {run.k * run.d} uint16 codes and "
            f"{run.user_features} float32 features ({run.value_bytes} bytes), got {len(value)}"
        )
    split = run.k * run.d * CODE_DTYPE.itemsize
    codes = np.frombuffer(value, dtype=CODE_DTYPE, count=run.k * run.d).reshape(run.k, run.d)
    if not run.user_features:
        return codes, None
    return codes, np.frombuffer(value, dtype=FEATURE_DTYPE, offset=split)


def to_prediction(run: RunMeta, value: bytes) -> Prediction:
    """One user's stored value in ``run``, unpacked."""
    codes, features = unpack_value(value, run)
    return Prediction(
        codes, run.run_id, run.created_at, run.codebook_version, features, run.calibration_version
    )
