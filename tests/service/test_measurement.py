"""Safety and measurement in production, over real HTTP: the per-surface cap on drops, users a
surface holds out, and the sampled decision log that `conrec report` joins with feedback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
from typer.testing import CliRunner

from conrec.cli.main import app as cli
from conrec.service.core.sampling import HOLDOUT, user_pseudonym, user_share
from conrec.store.runs import PredictionStore
from tests.service.support import ITEMS, publish_run, scraped

SALT = "test-salt"
USERS = [f"user-{i}" for i in range(40)]
# e0 is predicted: e0 scores 1, e0+.5e1 0.894, e0+e1 0.707, e1 and e2 0.
CANDIDATES = [{"item_id": n, "sid": list(ITEMS[n])} for n in ("e0", "e0+.5e1", "e0+e1", "e1")]
THRESHOLDS = """\
version: m1
default: 0.5
surfaces:
  capped: {max_drop_share: 0.25}
  held: {holdout: 0.5, log_sample: 1.0}
"""


def _api(server, shared_store, codebook_version, tmp_path, **settings) -> httpx.Client:
    publish_run(shared_store, "r1", codebook_version, {u: [(0, 0, 0)] for u in USERS})
    path = tmp_path / "thresholds.yaml"
    path.write_text(THRESHOLDS)
    return server(thresholds_file=path, user_hash_salt=SALT, **settings)


def _filter(api: httpx.Client, user: str, surface: str) -> dict:
    answer = api.post("/filter", json={"user_id": user, "candidates": CANDIDATES,
                                       "surface": surface})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_cap_drops_only_the_highest_scores(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    tmp_path: Path,
) -> None:
    api = _api(server, shared_store, codebook_version, tmp_path)
    free = _filter(api, "user-0", "other-surface")
    assert [d["item_id"] for d in free["dropped"]] == ["e0", "e0+.5e1", "e0+e1"]
    capped = _filter(api, "user-0", "capped")  # at most 25% of 4 candidates: one
    assert [d["item_id"] for d in capped["dropped"]] == ["e0"]
    assert capped["kept"] == ["e0+.5e1", "e0+e1", "e1"]
    metrics = api.get("/metrics").text
    assert scraped(metrics, "conrec_filter_candidates_capped_total", surface="capped") == 2.0


def test_held_out_users_are_scored_never_filtered_and_logged(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "decisions.jsonl"
    api = _api(server, shared_store, codebook_version, tmp_path, decision_log=log)
    answers = {u: _filter(api, u, "held") for u in USERS}
    held = {u for u, a in answers.items() if a["holdout"]}
    # The draw is the user's keyed hash: stable, about half at a share of 0.5.
    assert held == {u for u in USERS if user_share(SALT, HOLDOUT, u) < 0.5}
    assert 10 < len(held) < 30
    for user, answer in answers.items():
        if user in held:
            assert answer["kept"] == [c["item_id"] for c in CANDIDATES]
            assert [d["item_id"] for d in answer["would_drop"]] == ["e0", "e0+.5e1", "e0+e1"]
        else:
            assert [d["item_id"] for d in answer["dropped"]] == ["e0", "e0+.5e1", "e0+e1"]
        assert _filter(api, user, "held")["holdout"] == answer["holdout"]
    metrics = api.get("/metrics").text
    requests = scraped(metrics, "conrec_filter_requests_total", surface="held", mode="holdout")
    assert requests == 2 * len(held)
    would_drop = scraped(
        metrics, "conrec_filter_candidates_dropped_total", surface="held", mode="holdout"
    )
    assert would_drop == 3 * 2 * len(held)

    # Every decision of the sampled users (all of them at log_sample 1.0), pseudonymised.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _lines(log) < 2 * len(USERS) * len(CANDIDATES):
        time.sleep(0.05)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2 * len(USERS) * len(CANDIDATES)
    assert not any(u in log.read_text() for u in USERS)
    first = next(x for x in lines if x["user"] == user_pseudonym(SALT, next(iter(held))))
    assert first["decision"] == "would_drop"
    assert first["holdout"] is True
    assert first["item"] == "e0"
    assert abs(first["score"] - 1.0) < 1e-6
    assert (first["run"], first["config"], first["surface"]) == ("r1", "m1", "held")
    assert {x["decision"] for x in lines} == {"drop", "would_drop", "keep"}
    lines_counted = scraped(api.get("/metrics").text, "conrec_decision_log_lines_total")
    assert lines_counted == len(lines)

    # `conrec report` joins them with the week's feedback: held-out users disliked e0 and liked
    # e1 and e0+e1; the filter would have dropped e0 (caught) and e0+e1 (lost).
    now = time.time()
    feedback = pd.DataFrame(
        [(u, item, int(now) + 3600, polarity)
         for u in USERS for item, polarity in (("e0", "neg"), ("e1", "pos"), ("e0+e1", "pos"))],
        columns=["user_id", "item_id", "ts", "polarity"],
    )  # fmt: skip
    feedback.to_csv(tmp_path / "feedback.csv", index=False)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli,
        ["report", "--decision-log", str(log), "--feedback", str(tmp_path / "feedback.csv"),
         "--salt", SALT, "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "production_report.csv").set_index("mode")
    assert table.loc["holdout", "caught"] == 1.0  # every e0 dislike would have been dropped
    assert table.loc["holdout", "lost"] == 0.5  # e0+e1 of the two liked items
    # one dislike per held-out user, matched with the latest decision on the item before it
    assert table.loc["holdout", "negatives"] == len(held)
    # Enforced drops never reach the user: measured only through the held-out users.
    assert pd.isna(table.loc["enforce", "caught"])
    assert table.loc["enforce", "dropped"] == 2 * 3 * (len(USERS) - len(held))
    wrong_salt = CliRunner().invoke(
        cli,
        ["report", "--decision-log", str(log), "--feedback", str(tmp_path / "feedback.csv"),
         "--salt", "another", "--out", str(tmp_path / "other")],
    )  # fmt: skip
    other = pd.read_csv(tmp_path / "other" / "production_report.csv")
    assert wrong_salt.exit_code == 0
    assert (other["with_feedback"] == 0).all()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
