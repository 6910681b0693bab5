"""A calibration artifact as format 1 wrote it, for the tests that it is still read right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conrec.codebook.calibration import CALIBRATION_FILE


def as_format_1(folder: Path, mf_mean: float) -> None:
    """Rewrite the calibration in `folder` as format 1 wrote it: the rating's global mean beside
    the model, which saw the rating with it."""
    path = folder / CALIBRATION_FILE
    with np.load(path) as npz:
        arrays = dict(npz)
    meta = json.loads(str(arrays["meta"])) | {"format_version": 1}
    arrays |= {"meta": np.array(json.dumps(meta)), "mf_mean": np.asarray(mf_mean)}
    np.savez(path, **arrays)
