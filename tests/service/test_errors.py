"""Every class of bad input gets a 4xx with a clear message, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

GOOD = {"item_id": "e0", "sid": [0, 0, 0]}


@pytest.fixture(scope="module")
def api(server_module: Callable[..., httpx.Client], tmp_path_factory) -> httpx.Client:
    thresholds = Path(tmp_path_factory.mktemp("cfg")) / "thresholds.yaml"
    thresholds.write_text("default: 0.9\noverride_range: {min: 0.5, max: 0.99}\n")
    return server_module(
        max_candidates=5, max_body_bytes=2_000, api_key="s3cret", thresholds_file=thresholds
    )


AUTH = {"X-API-Key": "s3cret"}


def req(*candidates: dict, **fields: object) -> bytes:
    """A request body with the given candidates (as written, not validated) and fields."""
    return json.dumps({"user_id": "u", "candidates": list(candidates), **fields}).encode()


def sid(*codes: object) -> dict:
    return {"item_id": "e0", "sid": list(codes)}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"", 400, "malformed JSON"),
        (b"[1, 2]", 422, "Expected `object`, got `array`"),
        (
            b'{"user_id": 7, "candidates": [{"item_id": "e0"}]}',
            422,
            "Expected `str`, got `int` - at `$.user_id`",
        ),
        (b'{"user_id": "u"}', 422, "missing required field `candidates`"),
        (req(GOOD, user_id=""), 422, "length >= 1 - at `$.user_id`"),
        (req(), 422, "length >= 1 - at `$.candidates`"),
        (req(sid(0, 0.5, 0)), 422, "Expected `int`, got `float` - at `$.candidates[0].sid[1]`"),
        (req({"item_id": "e0", "sid": "000"}), 422, "Expected `array | null`, got `str`"),
        (req({"item_id": "e0", "x": 1}), 422, "unknown field `x`"),
        (req(sid(0, 0)), 422, "3 levels"),
        (req(GOOD, {"item_id": "e1", "sid": []}), 422, "length >= 1 - at `$.candidates[1].sid`"),
        (req(sid(0, 9, 0)), 422, "out of range"),
        (req(sid(-1, 0, 0)), 422, "out of range"),
        (req(sid(0, 10**30, 0)), 422, "64 bits"),
        (req(GOOD, threshold=0.1), 422, "allowed range [0.5, 0.99]"),
        (b'{"user_id": "u", "candidates": [{"item_id": "e0"}], "threshold": 1e999}', 422, "range"),
        (req(sid(True, 0, 0)), 422, "Expected `int`, got `bool`"),
        (req(GOOD, threshold="high"), 422, "Expected `float | null`, got `str`"),
        (
            b'{"user_id": "u", "candidates": [{"item_id": "e0"}], "threshold": NaN}',
            400,
            "malformed",
        ),
    ],
)
def test_bad_body_is_a_4xx_that_says_why(
    api: httpx.Client, body: bytes, status: int, says: str
) -> None:
    response = api.post("/filter", content=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert says in response.text


def test_too_many_candidates(api: httpx.Client) -> None:
    response = api.post("/filter", json={"user_id": "u", "candidates": [GOOD] * 6}, headers=AUTH)
    assert response.status_code == 422
    assert "6 candidates exceed the limit of 5" in response.json()["detail"]


def test_body_over_the_size_cap_is_413(api: httpx.Client) -> None:
    body = {"user_id": "u" * 3_000, "candidates": [GOOD]}
    response = api.post("/filter", json=body, headers=AUTH)
    assert response.status_code == 413
    assert "exceeds 2000 bytes" in response.json()["detail"]


def test_chunked_body_over_the_size_cap_is_413(api: httpx.Client) -> None:
    # No Content-Length: the cap must hold while streaming, too.
    response = api.post("/filter", content=iter([b"{" + b" " * 1500, b" " * 1500]), headers=AUTH)
    assert response.status_code == 413


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
def test_api_key_is_required_when_configured(api: httpx.Client, headers: dict) -> None:
    response = api.post("/filter", json={"user_id": "u", "candidates": [GOOD]}, headers=headers)
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["detail"]


def test_wrong_method_is_405(api: httpx.Client) -> None:
    assert api.get("/filter", headers=AUTH).status_code == 405


def test_none_of_the_above_was_a_500(api: httpx.Client) -> None:
    metrics = api.get("/metrics").text
    assert 'status="500"' not in metrics
    assert 'conrec_http_requests_total{route="/filter",status="422"}' in metrics
