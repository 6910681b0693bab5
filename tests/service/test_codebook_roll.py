"""A codebook roll under the running service, with no fail-open: a retrained codebook is
published into the root the service reads, new items join its SID table, and predictions made
with the previous codebook (still in Redis until the next nightly run) are still scored."""

from __future__ import annotations

import math
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from conrec.codebook.artifact import EncoderWeights, save_artifact
from conrec.codebook.bulk import add_items
from conrec.codebook.layout import version_dir
from conrec.codebook.versions import publish
from conrec.store.runs import PredictionStore
from tests.service.support import CODEWORDS, ITEMS, publish_run, scraped, wait_until

COS_NEAR = 1 / math.sqrt(1.25)  # cos(e0, e0 + 0.5 e1)

# Codebook B: codebook A (tests.service.support) with level 0's first two codewords swapped, so
# SIDs mean other vectors: (0,0,0) is e1 in B and e0 in A. Same items, other SIDs.
CODEWORDS_B = CODEWORDS.copy()
CODEWORDS_B[0, [0, 1]] = CODEWORDS[0, [1, 0]]
ITEMS_B = {**ITEMS, "e0": (1, 0, 0), "e1": (0, 0, 0)}


def build_b(out: Path) -> str:
    encoder = EncoderWeights((np.eye(4, dtype=np.float32),), (np.zeros(4, np.float32),))
    codes = np.array(list(ITEMS_B.values()), dtype=np.uint16)
    return save_artifact(out, CODEWORDS_B, encoder, list(ITEMS_B), codes, {"name": "rolled"})


def ask(api: httpx.Client, user: str, *candidates: dict, **fields: object) -> dict:
    body = {"user_id": user, "candidates": list(candidates), "threshold": 0.8, **fields}
    response = api.post("/filter", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def by_id(*names: str) -> list[dict]:
    return [{"item_id": n} for n in names]


def loaded(api: httpx.Client) -> dict[str, dict]:
    return {v["version"]: v for v in api.get("/readyz").json()["codebook_versions"]}


@pytest.fixture
def root(artifact_dir: Path, tmp_path: Path) -> Path:
    """A plain artifact directory holding codebook A, as `conrec codebook train` writes it."""
    out = tmp_path / "codebook"
    shutil.copytree(artifact_dir, out)
    return out


def test_codebook_roll_under_the_running_service_never_fails_open(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    root: Path,
    tmp_path: Path,
) -> None:
    version_a = codebook_version
    version_b = build_b(tmp_path / "retrained")
    publish_run(shared_store, "night1", version_a, {"a": [(0, 0, 0)]})  # a dislikes e0
    api = server(codebook_dir=root, thresholds_reload_s=0.05)
    assert list(loaded(api)) == [version_a]
    out = ask(api, "a", *by_id("e0", "e1"))
    assert (out["kept"], out["fail_open"], out["codebook_version"]) == (["e1"], False, version_a)

    # Requests for user a keep arriving while codebook B is published under the service.
    answers: list[dict] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=api.base_url, timeout=10) as client:
            while not stop.is_set():
                answers.append(ask(client, "a", *by_id("e0", "e1")))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        assert publish(tmp_path / "retrained", root).previous == version_a
        wait_until(lambda: api.get("/readyz").json()["codebook_version"] == version_b, 10)
        wait_until(lambda: len(answers) > 10, 10)
    finally:
        stop.set()
        thread.join()
    assert not [a for a in answers if a["fail_open"]]
    assert {tuple(a["kept"]) for a in answers} == {("e1",)}
    # a's prediction was read once and served from the run cache through the roll.
    lookups = "conrec_prediction_cache_lookups_total"
    metrics = api.get("/metrics").text
    assert scraped(metrics, lookups, result="miss") == 1
    assert scraped(metrics, lookups, result="hit") >= len(answers)
    versions = loaded(api)
    assert {v: info["current"] for v, info in versions.items()} == {
        version_b: True,
        version_a: False,
    }

    # The nightly run has not rerun: a's prediction (codebook A) is decoded with A, and ids are
    # looked up in A's table (in B's, e0 would be (1, 0, 0): e1 in A, kept at cosine 0).
    out = ask(api, "a", *by_id("e0", "e1", "e0+.5e1"))
    assert (out["kept"], out["fail_open"], out["codebook_version"]) == (["e1"], False, version_a)
    assert [d["item_id"] for d in out["dropped"]] == ["e0", "e0+.5e1"]
    # SIDs named as A's are compared with it; SIDs of the current codebook (B) cannot be.
    a_sids = [{"item_id": "e0", "sid": [0, 0, 0]}, {"item_id": "e1", "sid": [1, 0, 0]}]
    out = ask(api, "a", *a_sids, codebook_version=version_a)
    assert (out["kept"], out["fail_open"]) == (["e1"], False)
    b_sids = [{"item_id": "e0", "sid": [1, 0, 0]}, {"item_id": "e1", "sid": [0, 0, 0]}]
    out = ask(api, "a", *b_sids)
    assert (out["fail_open"], out["fail_open_reason"]) == (True, "sid_codebook_mismatch")
    out = ask(api, "a", *b_sids, codebook_version="0123456789ab")
    assert (out["fail_open"], out["fail_open_reason"]) == (True, "sid_codebook_unloaded")

    # A new item joins B's SID table; the service picks the grown table up.
    out = ask(api, "a", *by_id("new-e0"))
    assert out["unscored"] == ["new-e0"]
    added = add_items(root, ["new-e0", "e0"], np.array([[1, 0, 0, 0], [1, 0, 0, 0]]))
    assert (added.codebook_version, added.added, added.skipped) == (version_b, 1, 1)
    wait_until(lambda: loaded(api)[version_b]["table_version"] == 1, 10)
    assert loaded(api)[version_b]["items"] == len(ITEMS) + 1
    assert loaded(api)[version_a]["items"] == len(ITEMS)

    # The next nightly run predicts with B: b dislikes e0, which is (1, 0, 0) in B. The new
    # item's greedy SID (1, 0, 0) was taken by e0, so it got (1, 0, 3) = e0 + 0.5 e1.
    publish_run(shared_store, "night2", version_b, {"b": [(1, 0, 0)]})
    out = ask(api, "b", *by_id("new-e0", "e1", "e0"))
    assert (out["kept"], out["fail_open"], out["codebook_version"]) == (["e1"], False, version_b)
    assert {d["item_id"]: d["score"] for d in out["dropped"]} == pytest.approx(
        {"new-e0": COS_NEAR, "e0": 1.0}, abs=1e-6
    )
    out = ask(api, "b", *[{"item_id": "x", "sid": [1, 0, 3]}], codebook_version=version_b)
    assert [d["item_id"] for d in out["dropped"]] == ["x"]

    # A prediction made with a codebook that is neither current nor previous fails open.
    publish_run(shared_store, "night3", "c0ffeec0ffee", {"c": [(0, 0, 0)]})
    out = ask(api, "c", *by_id("e0", "e1"))
    assert (out["kept"], out["fail_open_reason"]) == (["e0", "e1"], "codebook_mismatch")

    metrics = api.get("/metrics").text
    assert (
        f'conrec_codebook_info{{role="current",table_version="1",version="{version_b}"}} 1.0'
        in metrics
    )
    assert (
        f'conrec_codebook_info{{role="previous",table_version="0",version="{version_a}"}} 1.0'
        in metrics
    )
    assert f'conrec_codebook_items{{version="{version_b}"}} 6.0' in metrics
    assert 'conrec_filter_fail_open_total{reason="sid_codebook_mismatch"} 1.0' in metrics


def test_only_the_current_and_previous_codebooks_stay_loaded(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    root: Path,
    tmp_path: Path,
) -> None:
    version_a = codebook_version
    version_b = build_b(tmp_path / "b")
    codewords_c = CODEWORDS.copy()
    codewords_c[2, 3] = 0.25 * codewords_c[2, 3]
    encoder = EncoderWeights((np.eye(4, dtype=np.float32),), (np.zeros(4, np.float32),))
    codes = np.array(list(ITEMS.values()), dtype=np.uint16)
    version_c = save_artifact(tmp_path / "c", codewords_c, encoder, list(ITEMS), codes, {})
    publish_run(shared_store, "night1", version_a, {"a": [(0, 0, 0)]})
    api = server(codebook_dir=root, thresholds_reload_s=0.05)

    publish(tmp_path / "b", root)
    wait_until(lambda: set(loaded(api)) == {version_a, version_b}, 10)
    publish(tmp_path / "c", root)
    wait_until(lambda: set(loaded(api)) == {version_b, version_c}, 10)
    out = ask(api, "a", *by_id("e0", "e1"))
    assert (out["kept"], out["fail_open_reason"]) == (["e0", "e1"], "codebook_mismatch")

    # Rolling back to A (published again from its version directory) makes it current again.
    assert not publish(version_dir(root, version_a), root).added
    wait_until(lambda: api.get("/readyz").json()["codebook_version"] == version_a, 10)
    assert set(loaded(api)) == {version_a, version_c}
    assert ask(api, "a", *by_id("e0", "e1"))["kept"] == ["e1"]


def test_a_broken_version_keeps_the_loaded_ones(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    root: Path,
    tmp_path: Path,
) -> None:
    publish_run(shared_store, "night1", codebook_version, {"a": [(0, 0, 0)]})
    api = server(codebook_dir=root, thresholds_reload_s=0.05)
    version_b = build_b(tmp_path / "b")
    publish(tmp_path / "b", root)
    wait_until(lambda: api.get("/readyz").json()["codebook_version"] == version_b, 10)
    (version_dir(root, version_b) / "item_sids.npz").write_bytes(b"not a zip")
    wait_until(lambda: api.get("/readyz").json()["codebook_error"] is not None, 10)
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert "cannot read item -> SID table" in ready.json()["codebook_error"]
    assert set(loaded(api)) == {codebook_version, version_b}
    assert ask(api, "a", *by_id("e0", "e1"))["kept"] == ["e1"]
    assert "conrec_codebook_reload_failures_total 1.0" in api.get("/metrics").text
