"""The calibrated score over real HTTP: P(dislike) from the artifact beside the codebook and the
user's part stored with their prediction; the items-only model for users without one; hot
reload, refusal of a bad artifact, and max_cosine surfaces unchanged."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from conrec.codebook.artifact import load_codebook, load_item_sids
from conrec.codebook.calibration import (
    CALIBRATION_FILE,
    FEATURES,
    ITEM_FEATURES,
    LogisticModel,
    load_calibration,
    prefix_depth,
    save_calibration,
)
from conrec.codebook.similarity import max_cosine
from conrec.store.runs import PredictionStore
from tests.service.support import ITEMS, scraped, wait_until

THRESHOLDS = """\
version: c1
default: 0.9
surfaces:
  cal: {score: calibrated, threshold: 0.5}
  cos: 0.9
"""
# prior, log_feedback per item (in ITEMS order); e2 is unknown to the artifact.
ITEM_PARTS = np.array([[0.9, 1.0], [0.1, 1.0], [0.6, 2.0], [0.4, 0.0]])
USER = np.array([0.3, 0.1, 1.0, 0.0], np.float32)  # dislike rate, mf bias, 2 factors


def write_calibration(folder: Path, codebook_version: str, weight: float = 4.0) -> str:
    ids = np.array(list(ITEMS))[:4]
    return save_calibration(
        folder,
        codebook_version=codebook_version,
        item_ids=ids,
        item_features=ITEM_PARTS,
        prefix_features=np.array([[0.5, 0.0]] * 4),
        mf_items=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]),
        # The full model leans on the prior and the max cosine; the items-only on the prior.
        full=LogisticModel(
            np.array([weight, 0, 0, 0, weight, 0]), -weight, np.zeros(6), np.ones(6)
        ),
        items_only=LogisticModel(np.array([weight, 0.0]), -weight / 2, np.zeros(2), np.ones(2)),
        meta={"fitted": "by hand"},
    )


@pytest.fixture
def codebook_dir(artifact_dir: Path, codebook_version: str, tmp_path: Path) -> Path:
    folder = tmp_path / "codebook"
    shutil.copytree(artifact_dir, folder)
    write_calibration(folder, codebook_version)
    return folder


def publish(store: PredictionStore, run_id: str, codebook_version: str, calibration: str,
            users: dict[str, list], features: bool = True) -> None:  # fmt: skip
    writer = store.begin_run(
        run_id, codebook_version=codebook_version, model_version="m1", k=2,
        user_features=len(USER) if features else 0,
        calibration_version=calibration if features else "",
    )  # fmt: skip
    codes = np.array(list(users.values()), dtype=np.uint16)
    writer.write_batch(list(users), codes, np.tile(USER, (len(users), 1)) if features else None)
    writer.publish()


def ask(api: httpx.Client, user: str, surface: str, sids: np.ndarray | None = None) -> dict:
    candidates = [
        {"item_id": item} if sids is None else {"item_id": item, "sid": sids[row].tolist()}
        for row, item in enumerate(ITEMS)
    ]
    body = {"user_id": user, "surface": surface, "candidates": candidates}
    answer = api.post("/filter", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def scores(answer: dict) -> dict[str, float]:
    return {d["item_id"]: d["score"] for d in answer["dropped"] + answer["would_drop"]}


def test_calibrated_probabilities_by_hand_and_the_items_only_model(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    codebook_dir: Path,
    tmp_path: Path,
) -> None:
    calibration = load_calibration(codebook_dir)
    publish(shared_store, "r1", codebook_version, calibration.version,
            {"u": [(0, 0, 0), (0, 0, 0)]})  # fmt: skip
    (tmp_path / "t.yaml").write_text(THRESHOLDS)
    api = server(codebook_dir=codebook_dir, thresholds_file=tmp_path / "t.yaml")

    answer = ask(api, "u", "cal")
    assert (answer["score"], answer["fail_open"]) == ("calibrated", False)
    # By hand: sigmoid(4 * prior + 4 * max_cosine - 4); e0 is the prediction (cosine 1).
    table = load_item_sids(codebook_dir)
    codes = table.codes.astype(np.int64)
    cosines = max_cosine(load_codebook(codebook_dir), codes, codes[:1])
    expected = {}
    for row, item in enumerate(ITEMS):
        prior = ITEM_PARTS[row, 0] if row < 4 else 0.5  # e2: the prefix mean
        z = 4 * prior + 4 * cosines[row] - 4
        expected[item] = 1 / (1 + np.exp(-z))
    dropped = {i for i, p in expected.items() if p > 0.5}
    assert dropped == {"e0", "e0+.5e1", "e0+e1"}
    got = scores(answer)
    assert set(got) == dropped
    for item in dropped:
        assert got[item] == pytest.approx(expected[item], rel=1e-5)
    assert prefix_depth(codes[:1], codes[:1])[0] == 3
    # The same candidates with their SIDs: found by SID, scored from their items' vectors.
    assert len(np.unique(codes, axis=0)) == len(codes)
    with_sids = scores(ask(api, "u", "cal", sids=codes))
    assert with_sids.keys() == got.keys()
    for item in dropped:
        assert with_sids[item] == pytest.approx(got[item], rel=1e-5)

    # No prediction: the items-only model, sigmoid(4 * prior - 2), not a fail-open.
    nobody = ask(api, "nobody", "cal")
    assert (nobody["fail_open"], nobody["prediction_version"]) == (False, None)
    assert set(scores(nobody)) == {"e0", "e0+e1"}  # priors 0.9 and 0.6 above one half
    assert scores(nobody)["e0"] == pytest.approx(1 / (1 + np.exp(-(4 * 0.9 - 2))), rel=1e-5)
    # The max_cosine surface is untouched by the calibration: only e0 above 0.9 (e0+.5e1: 0.894).
    cos = ask(api, "u", "cos")
    assert (cos["score"], sorted(scores(cos))) == ("max_cosine", ["e0"])
    assert ask(api, "nobody", "cos")["fail_open_reason"] == "no_prediction"
    metrics = api.get("/metrics").text
    assert scraped(metrics, "conrec_filter_items_only_total", surface="cal",
                   reason="no_prediction") == 1.0  # fmt: skip
    assert scraped(metrics, "conrec_filter_calibrated_probability_count", surface="cal") == 15
    assert scraped(metrics, "conrec_calibration_info", version=calibration.version,
                   codebook_version=codebook_version, role="current") == 1.0  # fmt: skip


def test_a_run_without_user_parts_is_scored_items_only_and_the_artifact_hot_reloads(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    codebook_dir: Path,
    tmp_path: Path,
) -> None:
    publish(shared_store, "r1", codebook_version, "", {"u": [(0, 0, 0), (0, 0, 0)]},
            features=False)  # fmt: skip
    (tmp_path / "t.yaml").write_text(THRESHOLDS)
    api = server(codebook_dir=codebook_dir, thresholds_file=tmp_path / "t.yaml",
                 thresholds_reload_s=0.05)  # fmt: skip
    assert set(scores(ask(api, "u", "cal"))) == {"e0", "e0+e1"}  # items only
    metrics = api.get("/metrics").text
    assert scraped(metrics, "conrec_filter_items_only_total", surface="cal",
                   reason="no_user_features") == 1.0  # fmt: skip

    # A refreshed artifact (a nightly run's) is picked up without a restart.
    first = load_calibration(codebook_dir).version
    second = write_calibration(codebook_dir, codebook_version, weight=8.0)
    wait_until(lambda: f'version="{second}"' in api.get("/metrics").text, 10)
    e0 = scores(ask(api, "u", "cal"))["e0"]
    assert e0 == pytest.approx(1 / (1 + np.exp(-(8 * 0.9 - 4))), rel=1e-5)
    # The one before stays loaded as the previous: the published run may carry its users' parts.
    previous = scraped(api.get("/metrics").text, "conrec_calibration_info", version=first,
                       codebook_version=codebook_version, role="previous")  # fmt: skip
    assert previous == 1.0

    # A corrupt artifact, or one for another codebook, is refused; the loaded one serves on.
    (codebook_dir / CALIBRATION_FILE).write_bytes(b"garbage")
    wait_until(lambda: scraped(api.get("/metrics").text,
                               "conrec_calibration_reload_failures_total") == 1.0, 10)  # fmt: skip
    write_calibration(codebook_dir, "another-codebook")
    wait_until(lambda: scraped(api.get("/metrics").text,
                               "conrec_calibration_reload_failures_total") == 2.0, 10)  # fmt: skip
    assert scores(ask(api, "u", "cal"))["e0"] == pytest.approx(e0)


def test_a_calibrated_surface_without_an_artifact_fails_open(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    tmp_path: Path,
) -> None:
    publish(shared_store, "r1", codebook_version, "", {"u": [(0, 0, 0), (0, 0, 0)]},
            features=False)  # fmt: skip
    (tmp_path / "t.yaml").write_text(THRESHOLDS)
    api = server(thresholds_file=tmp_path / "t.yaml")  # the suite's codebook: no calibration
    answer = ask(api, "u", "cal")
    assert (answer["fail_open"], answer["fail_open_reason"]) == (True, "no_calibration")
    assert answer["kept"] == list(ITEMS)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"default: 0.9\nsurfaces: {cal: {score: calibrated, threshold: -0.2}}\n", "probability"),
        (b"default: -0.5\nscore: calibrated\n", "probability"),
        (b"default: 0.9\nscore: logit\n", "score: Input should be 'max_cosine' or 'calibrated'"),
    ],
)
def test_calibrated_thresholds_are_probabilities(raw: bytes, says: str) -> None:
    from conrec.service.core.thresholds import ThresholdsError, parse_thresholds

    with pytest.raises(ThresholdsError, match=says):
        parse_thresholds(raw)
    assert FEATURES[:2] == ITEM_FEATURES
