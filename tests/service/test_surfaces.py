"""Surfaces over real HTTP: shadow mode, the metrics labelled by surface, the score histogram."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from conrec.service.metrics import SCORE_BUCKETS
from conrec.store.runs import PredictionStore
from tests.service.support import ITEMS, publish_run, scraped

THRESHOLDS = """\
version: s1
default: 0.8
surfaces:
  home: 0.8
  search: {mode: shadow}
  notifications: {threshold: 0.9, mode: shadow}
"""
# Every item of the hand-made codebook, half of them with their SID, and one the SID table lacks.
CANDIDATES = [
    {"item_id": name, **({"sid": list(sid)} if i % 2 else {})}
    for i, (name, sid) in enumerate(ITEMS.items())
] + [{"item_id": "brand-new"}]
IDS = [c["item_id"] for c in CANDIDATES]


@pytest.fixture
def api(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    tmp_path: Path,
) -> httpx.Client:
    # u's predicted negatives: e0 and e2; v's: e0 + e1 (scores from 0 to 1 over the items).
    users = {"u": [(0, 0, 0), (2, 0, 0)], "v": [(0, 1, 0), (0, 1, 0)]}
    publish_run(shared_store, "r1", codebook_version, users)
    path = tmp_path / "thresholds.yaml"
    path.write_text(THRESHOLDS)
    return server(thresholds_file=path)


def filter_(api: httpx.Client, **body: object) -> dict:
    response = api.post("/filter", json={"candidates": CANDIDATES, **body})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("user", ["u", "v"])
def test_shadow_keeps_everything_and_reports_what_enforce_drops(
    api: httpx.Client, user: str
) -> None:
    enforce = filter_(api, user_id=user, surface="home")
    shadow = filter_(api, user_id=user, surface="search")  # the same threshold, 0.8
    assert (enforce["surface"], enforce["mode"]) == ("home", "enforce")
    assert (shadow["surface"], shadow["mode"]) == ("search", "shadow")
    assert enforce["dropped"], "the comparison needs drops"
    assert enforce["would_drop"] == []
    assert enforce["kept"] == [
        i for i in IDS if i not in {d["item_id"] for d in enforce["dropped"]}
    ]
    assert shadow["kept"] == IDS
    assert shadow["dropped"] == []
    assert shadow["would_drop"] == enforce["dropped"]
    assert shadow["unscored"] == enforce["unscored"] == ["brand-new"]
    assert shadow["fail_open"] is enforce["fail_open"] is False


def test_shadow_mode_fails_open_like_enforce(api: httpx.Client) -> None:
    out = filter_(api, user_id="nobody", surface="search")
    assert (out["fail_open_reason"], out["mode"], out["would_drop"]) == (
        "no_prediction",
        "shadow",
        [],
    )
    assert out["kept"] == IDS


def test_metrics_are_labelled_by_configured_surface_or_other(api: httpx.Client) -> None:
    home = filter_(api, user_id="u", surface="home")
    search = filter_(api, user_id="u", surface="search")
    typo = filter_(api, user_id="u", surface="serach")  # unknown: the defaults, never a 4xx
    absent = filter_(api, user_id="u")
    filter_(api, user_id="nobody", surface="home")  # fails open: seen, but not scored
    assert typo["surface"] == absent["surface"] == "other"
    assert typo["mode"] == absent["mode"] == "enforce"
    assert typo["dropped"] == absent["dropped"] == home["dropped"]  # default 0.8 == home's

    text = api.get("/metrics").text
    assert "serach" not in text
    n, drops = len(IDS), len(home["dropped"])

    def value(name: str, surface: str, **labels: str) -> float:
        return scraped(text, f"conrec_filter_{name}", surface=surface, **labels)

    assert value("candidates_seen_total", "home") == 2 * n
    assert value("candidates_seen_total", "search") == n
    assert value("candidates_seen_total", "other") == 2 * n
    assert value("candidates_unscored_total", "home") == 2  # "brand-new", twice
    assert value("candidates_unscored_total", "other") == 2
    assert value("requests_total", "home", mode="enforce") == 1  # the fail-open one is not
    assert value("requests_total", "other", mode="enforce") == 2
    assert value("requests_total", "search", mode="shadow") == 1
    assert value("candidates_dropped_total", "home", mode="enforce") == drops
    assert value("candidates_dropped_total", "search", mode="shadow") == len(search["would_drop"])
    assert value("candidates_dropped_total", "search", mode="enforce") == 0
    assert value("candidates_dropped_total", "other", mode="enforce") == 2 * drops
    # A configured surface without traffic yet is exported at zero, for the dashboards.
    for mode in ("enforce", "shadow"):
        assert value("candidates_dropped_total", "notifications", mode=mode) == 0
    assert value("max_cosine_count", "notifications") == 0


def test_score_histogram_counts_every_scored_candidate(api: httpx.Client) -> None:
    # A request's own threshold of -1 lists every scored candidate, with its score, in
    # would_drop (shadow): the scores the histogram must have counted.
    scores = []
    for user in ("u", "v", "u"):
        out = filter_(api, user_id=user, surface="notifications", threshold=-1.0)
        assert out["unscored"] == ["brand-new"]
        scores += [d["score"] for d in out["would_drop"]]
    scores = np.array(scores)
    assert len(scores) == 3 * (len(IDS) - 1)
    assert len(np.unique(scores)) >= 4, "the check needs scores spread over several buckets"

    text = api.get("/metrics").text
    name = "conrec_filter_max_cosine"
    assert scraped(text, f"{name}_count", surface="notifications") == len(scores)
    assert scraped(text, f"{name}_sum", surface="notifications") == pytest.approx(scores.sum())
    for le in (*SCORE_BUCKETS, np.inf):
        expected = int(np.count_nonzero(scores <= le))
        label = "+Inf" if le == np.inf else str(float(le))
        assert scraped(text, f"{name}_bucket", surface="notifications", le=label) == expected, le
    assert scraped(text, f"{name}_count", surface="home") == 0
