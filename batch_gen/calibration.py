"""The nightly refresh of the calibrated score (`conrec.codebook.calibration`): the per-item
features and the factorisation's item side recomputed from every event up to the run's cutoff,
written into the codebook's folder for the service, and each user's part, stored with their
prediction.

The fitted models (the logistic regressions) come unchanged from the artifact `conrec evaluate`
wrote; only the features they read move with the data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from conrec.codebook.artifact import Codebook, ItemSIDTable
from conrec.codebook.calibration import (
    PRIOR_LIFT,
    Calibration,
    load_calibration,
    user_layout,
)
from conrec.model.calibration import fit_item_side, save_item_side, user_part
from conrec.model.data.splits import UserWindow
from conrec.model.data.visibility import EventLog
from conrec.model.mf import MFConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refreshed:
    """The refreshed artifact's version, and each user's part ([F + 2] float32)."""

    version: str
    width: int
    users: dict[str, np.ndarray]


def refresh_calibration(
    fitted: str | Path,
    artifact_dir: Path,
    table: ItemSIDTable,
    codebook: Codebook,
    events: pd.DataFrame,
    windows: list[UserWindow],
    run_id: str,
) -> Refreshed:
    """Refit the per-item parts on the events up to the windows' latest cutoff (a nightly run's
    `latest` cutoff is every user's), write the artifact into `artifact_dir` (the codebook
    version's folder) and return every user's part, from their own history."""
    base = load_calibration(fitted)
    if base.codebook_version != codebook.version:
        raise ValueError(
            f"calibration {fitted} was fitted for codebook {base.codebook_version}; this run "
            f"predicts with {codebook.version}: fit it again (`conrec evaluate`)"
        )
    settings = base.meta["settings"]
    until = max((w.cutoff for w in windows), default=int(events["ts"].max()))
    log = EventLog.of(events, table.item_ids.tolist())
    mf_config = MFConfig(factors=settings["factors"], regularization=settings["regularization"])
    parts, mf = fit_item_side(log, until, table, codebook.size, settings["prior_strength"],
                              mf_config)  # fmt: skip
    full, items_only = base.full, base.items_only
    if base.meta["format_version"] == 1:
        # Its models saw absolute priors: the same scores from the lifts at this cutoff.
        # (PRIOR_LIFT is the first column of both.)
        full, items_only = (m.shifted(PRIOR_LIFT, parts.share) for m in (full, items_only))
    version = save_item_side(
        artifact_dir, table, parts, mf, full, items_only,
        meta={**_kept(base), "items_until": int(until), "refreshed_by_run": run_id},
    )  # fmt: skip
    users = {
        w.user_id: user_part(
            w,
            table.rows_of(w.history_items.tolist()),
            mf,
            parts.share,
            settings["user_strength"],
        )
        for w in windows
    }
    logger.info("calibration %s refreshed at %s into %s (%d users)", version, until,
                artifact_dir, len(users))  # fmt: skip
    return Refreshed(version, len(user_layout(settings["factors"])), users)


def _kept(base: Calibration) -> dict:
    generated = {"format_version", "version", "codebook_version", "features", "created_at",
                 "items_only_features", "items_until", "refreshed_by_run"}  # fmt: skip
    return {k: v for k, v in base.meta.items() if k not in generated}
