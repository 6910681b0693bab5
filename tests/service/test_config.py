"""Settings from the environment, the thresholds file, and its hot reload over real HTTP."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.core.config import Settings
from service.core.thresholds import ThresholdsError, ThresholdsSource, parse_thresholds

BODY = {"user_id": "nobody", "candidates": [{"item_id": "e0"}], "surface": "home"}


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_settings_read_the_conrec_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONREC_REDIS_URL", "rediss://:pw@redis.example:6380/2")
    monkeypatch.setenv("CONREC_REDIS_TIMEOUT_MS", "7.5")
    monkeypatch.setenv("CONREC_API_KEY", "k")
    monkeypatch.setenv("CONREC_CODEBOOK_DIR", "/models/codebook")
    settings = Settings()
    assert settings.redis_url.get_secret_value() == "rediss://:pw@redis.example:6380/2"
    assert "pw" not in repr(settings)
    assert settings.redis_timeout_ms == 7.5
    assert settings.codebook_dir == Path("/models/codebook")


def test_a_blank_api_key_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONREC_API_KEY", "")
    assert Settings().api_key is None
    monkeypatch.setenv("CONREC_API_KEY", "k")
    assert Settings().api_key.get_secret_value() == "k"


def test_thresholds_per_surface_and_content_version() -> None:
    raw = b"default: 0.9\nsurfaces: {home: 0.8}\noverride_range: {min: 0.5, max: 0.95}\n"
    thresholds = parse_thresholds(raw)
    assert thresholds.for_surface("home") == 0.8
    assert thresholds.for_surface("search") == 0.9
    assert thresholds.for_surface(None) == 0.9
    assert thresholds.version == parse_thresholds(raw).version != ""
    assert parse_thresholds(b"version: v7\ndefault: 0.9\n").version == "v7"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"default: 1.5\n", "less than or equal to 1"),
        (b"surfaces: {home: 0.8}\n", "default"),
        (b"default: 0.9\noverride_range: {min: 0.9, max: 0.5}\n", "exceeds max"),
        (b"default: 0.9\nsurfaces: {home: high}\n", "valid number"),
        (b"default: 0.9\ntypo: 1\n", "Extra inputs"),
        (b"- 0.9\n", "mapping"),
        (b"default: [0.9\n", "expected"),
    ],
)
def test_invalid_thresholds_are_rejected_with_the_reason(raw: bytes, says: str) -> None:
    with pytest.raises(ThresholdsError, match=says):
        parse_thresholds(raw)


def test_a_bad_file_keeps_the_last_good_config(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("version: good\ndefault: 0.8\n")
    errors: list[str] = []
    source = ThresholdsSource(path, on_error=errors.append)
    write_atomically(path, "default: nope\n")
    assert source.refresh() is False
    assert source.current.version == "good"
    assert "invalid thresholds file" in source.last_error
    path.unlink()
    source.refresh()
    source.refresh()  # still missing: counted once, not once per poll
    assert source.current.version == "good"
    assert len(errors) == 2


def test_hot_reload_over_http(server: Callable[..., httpx.Client], tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("version: v1\ndefault: 0.9\nsurfaces: {home: 0.8}\n")
    api = server(thresholds_file=path, thresholds_reload_s=0.05)
    assert api.post("/filter", json=BODY).json()["threshold"] == 0.8

    write_atomically(path, "version: v2\ndefault: 0.9\nsurfaces: {home: 0.7}\n")
    out = wait_for(
        lambda: api.post("/filter", json=BODY).json(), lambda o: o["config_version"] == "v2"
    )
    assert out["threshold"] == 0.7
    assert 'conrec_thresholds_config_info{version="v2"} 1.0' in api.get("/metrics").text

    write_atomically(path, "version: v3\ndefault: 2.0\n")  # invalid: kept out
    metrics = wait_for(
        lambda: api.get("/metrics").text,
        lambda m: "conrec_thresholds_config_reload_failures_total 1.0" in m,
    )
    assert "conrec_thresholds_config_valid 0.0" in metrics
    assert 'conrec_thresholds_config_info{version="v2"} 1.0' in metrics
    assert api.post("/filter", json=BODY).json()["config_version"] == "v2"
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert "less than or equal to 1" in ready.json()["config_error"]


def test_invalid_file_at_startup_leaves_the_service_unready(
    server: Callable[..., httpx.Client], tmp_path: Path
) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("default: oops\n")
    api = server(thresholds_file=path, thresholds_reload_s=0.05)
    assert api.get("/readyz").status_code == 503
    response = api.post("/filter", json=BODY)
    assert response.status_code == 503
    assert "thresholds" in response.json()["detail"]
    write_atomically(path, "version: fixed\ndefault: 0.9\n")
    wait_for(lambda: api.get("/readyz").status_code, lambda s: s == 200)


def wait_for(fetch: Callable, done: Callable, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            assert done(value), value
            return value
        time.sleep(0.02)
