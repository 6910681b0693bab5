"""Settings from the environment, the thresholds file, and its hot reload over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conrec.service.core.config import Settings
from conrec.service.core.thresholds import (
    OTHER,
    Surface,
    ThresholdsError,
    ThresholdsSource,
    parse_thresholds,
)
from conrec.store.runs import PredictionStore
from tests.service.support import publish_run, scraped, write_atomically

BODY = {"user_id": "nobody", "candidates": [{"item_id": "e0"}], "surface": "home"}


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
    monkeypatch.setenv("CONREC_REDIS_URL", "redis://redis.example:6379/0")
    monkeypatch.setenv("CONREC_API_KEY", "")
    assert Settings().api_key is None
    monkeypatch.setenv("CONREC_API_KEY", "k")
    assert Settings().api_key.get_secret_value() == "k"


def test_thresholds_per_surface_and_content_version() -> None:
    raw = b"default: 0.9\nsurfaces: {home: 0.8}\noverride_range: {min: 0.5, max: 0.95}\n"
    thresholds = parse_thresholds(raw)
    assert thresholds.policy("home") == ("home", Surface(threshold=0.8, mode="enforce"))
    assert thresholds.policy("search") == (OTHER, Surface(threshold=0.9, mode="enforce"))
    assert thresholds.policy(None) == (OTHER, Surface(threshold=0.9, mode="enforce"))
    assert thresholds.version == parse_thresholds(raw).version != ""
    assert parse_thresholds(b"version: v7\ndefault: 0.9\n").version == "v7"


def test_long_form_surfaces_and_a_default_mode() -> None:
    thresholds = parse_thresholds(
        b"default: 0.9\nmode: shadow\nsurfaces:\n"
        b"  home: 0.85\n"  # short form: the default mode
        b"  search: {threshold: 0.95, mode: enforce}\n"
        b"  feed: {mode: enforce}\n"  # the default threshold
        b"  promo: {threshold: 0.7}\n"  # the default mode
    )
    assert thresholds.policy("home") == ("home", Surface(threshold=0.85, mode="shadow"))
    assert thresholds.policy("search") == ("search", Surface(threshold=0.95, mode="enforce"))
    assert thresholds.policy("feed") == ("feed", Surface(threshold=0.9, mode="enforce"))
    assert thresholds.policy("promo") == ("promo", Surface(threshold=0.7, mode="shadow"))
    # Unknown and absent surfaces: the defaults, labelled "other"; names are case-sensitive.
    assert thresholds.policy("Home") == (OTHER, Surface(threshold=0.9, mode="shadow"))
    assert thresholds.policy(None) == (OTHER, Surface(threshold=0.9, mode="shadow"))
    assert parse_thresholds(b"default: 0.9\n").mode == "enforce"


def test_surfaces_inherit_the_cap_holdout_and_log_sample() -> None:
    thresholds = parse_thresholds(
        b"default: 0.9\nmax_drop_share: 0.5\nholdout: 0.05\nsurfaces:\n"
        b"  home: 0.85\n"
        b"  search: {holdout: 0.2, log_sample: 0.01, max_drop_share: 1.0}\n"
    )
    assert thresholds.policy("home")[1] == Surface(threshold=0.85, max_drop_share=0.5,
                                                   holdout=0.05)  # fmt: skip
    assert thresholds.policy("search")[1] == Surface(
        threshold=0.9, max_drop_share=1.0, holdout=0.2, log_sample=0.01
    )
    assert thresholds.policy(None)[1] == Surface(threshold=0.9, max_drop_share=0.5, holdout=0.05)


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
        (b"default: 0.9\nsurfaces: {other: 0.8}\n", "'other' is reserved: it labels"),
        (b"default: 0.9\nsurfaces: {Other: 0.8}\n", "'Other' is reserved"),
        (b"default: 0.9\nsurfaces: {home page: 0.8}\n", "'home page' is not a surface name"),
        (b"default: 0.9\nmode: dry-run\n", "mode: Input should be 'enforce' or 'shadow'"),
        (b"default: 0.9\nsurfaces: {home: {mode: off}}\n", "surfaces.home.mode"),
        (b"default: 0.9\nsurfaces: {home: {treshold: 0.8}}\n", "surfaces.home.treshold: Extra"),
        (b"default: 0.9\nsurfaces: {home: {threshold: 1.2}}\n", "surfaces.home.threshold: "),
        (b"surfaces: {home: {mode: shadow}}\n", "^default: Field required"),
        (b"default: 0.9\nmax_drop_share: 1.5\n", "max_drop_share: Input should be less"),
        (b"default: 0.9\nsurfaces: {home: {holdout: -0.1}}\n", "surfaces.home.holdout: "),
    ],
)
def test_invalid_thresholds_are_rejected_with_the_reason(raw: bytes, says: str) -> None:
    with pytest.raises(ThresholdsError, match=says) as error:
        parse_thresholds(raw)
    assert "\n" not in str(error.value)  # one line, for logs, /readyz and the check command


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


def test_hot_reload_switches_a_surface_from_shadow_to_enforce(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    tmp_path: Path,
) -> None:
    publish_run(shared_store, "r1", codebook_version, {"u": [(0, 0, 0)]})  # predicted: e0
    path = tmp_path / "thresholds.yaml"
    path.write_text("version: v1\ndefault: 0.8\nsurfaces: {search: {mode: shadow}}\n")
    api = server(thresholds_file=path, thresholds_reload_s=0.05)
    body = {
        "user_id": "u",
        "surface": "search",
        "candidates": [{"item_id": "e0"}, {"item_id": "e1"}],
    }
    shadow = api.post("/filter", json=body).json()
    assert (shadow["mode"], shadow["kept"], shadow["dropped"]) == ("shadow", ["e0", "e1"], [])
    assert [d["item_id"] for d in shadow["would_drop"]] == ["e0"]

    write_atomically(path, "version: v2\ndefault: 0.8\nsurfaces: {search: {mode: enforce}}\n")
    enforce = wait_for(
        lambda: api.post("/filter", json=body).json(), lambda o: o["config_version"] == "v2"
    )
    assert (enforce["mode"], enforce["kept"], enforce["would_drop"]) == ("enforce", ["e1"], [])
    assert enforce["dropped"] == shadow["would_drop"]
    metrics = api.get("/metrics").text
    requests, drops = "conrec_filter_requests_total", "conrec_filter_candidates_dropped_total"
    # One request in enforce mode (the first answer under v2), one drop.
    assert scraped(metrics, requests, surface="search", mode="enforce") == 1
    assert scraped(metrics, drops, surface="search", mode="enforce") == 1
    # Shadow: every request before it (the polls included), one would-be drop each.
    shadows = scraped(metrics, requests, surface="search", mode="shadow")
    assert shadows >= 1
    assert scraped(metrics, drops, surface="search", mode="shadow") == shadows
