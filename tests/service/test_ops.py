"""Liveness, readiness, the thresholds in force, metrics exposition, the OpenAPI document, the
import boundary and `conrec serve`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry

from conrec.service.api.examples import REQUEST_EXAMPLES, RESPONSE_EXAMPLES
from conrec.service.api.schemas import FilterRequest, FilterResponse
from conrec.service.core.config import Settings
from conrec.service.main import create_app
from tests.service.support import service_process, wait_until, write_atomically

BODY = {"user_id": "u", "candidates": [{"item_id": "e0"}]}


def test_healthz_and_readyz(server: Callable[..., httpx.Client], codebook_version: str) -> None:
    api = server(thresholds_file=None)
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["codebook_version"] == codebook_version
    assert ready.json()["config_version"] == "builtin"


def test_missing_codebook_is_unready_until_it_appears(
    server: Callable[..., httpx.Client], artifact_dir: Path, tmp_path: Path
) -> None:
    later = tmp_path / "codebook"
    api = server(codebook_dir=later, thresholds_reload_s=0.05)
    ready = api.get("/readyz")
    assert ready.status_code == 503
    assert "no codebook artifact" in ready.json()["reasons"][0]
    assert api.post("/filter", json=BODY).status_code == 503

    shutil.copytree(artifact_dir, later)
    wait_until(lambda: api.get("/readyz").status_code == 200, 5, interval_s=0.02)
    assert api.get("/readyz").status_code == 200
    assert api.post("/filter", json=BODY).json()["fail_open_reason"] == "no_prediction"


def test_metrics_are_named_with_units_and_exposed(server: Callable[..., httpx.Client]) -> None:
    api = server()
    api.post("/filter", json=BODY)
    text = api.get("/metrics").text
    for name in (
        "conrec_http_request_duration_seconds_bucket",
        "conrec_http_requests_total",
        "conrec_filter_candidates_seen_total",
        "conrec_filter_candidates_dropped_total",
        "conrec_filter_fail_open_total",
        "conrec_redis_errors_total",
        "conrec_redis_request_duration_seconds_bucket",
        "conrec_prediction_age_seconds",
        "conrec_thresholds_config_info",
    ):
        assert name in text, name
    assert "user_id" not in text


def test_apps_get_their_own_registries(artifact_dir: Path, redis_url: str) -> None:
    settings = Settings(codebook_dir=artifact_dir, redis_url=redis_url)
    registry = CollectorRegistry()
    create_app(settings, registry)
    create_app(settings)  # would raise "Duplicated timeseries" on a shared registry
    assert registry.get_sample_value("conrec_thresholds_config_valid") == 1.0


def test_service_imports_no_ml_framework() -> None:
    code = (
        "import sys, service.main, service.filtering; "
        "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_conrec_serve_starts_the_service(
    artifact_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    env = {"CONREC_CODEBOOK_DIR": str(artifact_dir), "CONREC_REDIS_URL": redis_url}
    with service_process(env, tmp_path / "serve.log") as service:
        assert httpx.get(f"{service.url}/readyz").status_code == 200


def test_openapi_documents_the_filter_bodies(server: Callable[..., httpx.Client]) -> None:
    doc = server().get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"FilterRequest", "Candidate", "FilterResponse"} <= set(schemas)
    body = doc["paths"]["/filter"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/FilterRequest"


def test_openapi_documents_the_filter_api_key_header(server: Callable[..., httpx.Client]) -> None:
    # /filter reads X-API-Key itself (no FastAPI dependency); the document still names it.
    params = server().get("/openapi.json").json()["paths"]["/filter"]["post"]["parameters"]
    assert [p["name"] for p in params if p["in"] == "header"] == ["x-api-key"]


def test_thresholds_endpoint_shows_the_builtin_config(server: Callable[..., httpx.Client]) -> None:
    shown = server(thresholds_file=None).get("/thresholds")
    assert shown.status_code == 200
    body = shown.json()
    assert body.pop("loaded_at") > 0
    assert body == {
        "path": None,
        "version": "builtin",
        "default": 0.9,
        "mode": "shadow",  # no threshold chosen from data: nothing is dropped
        "score": "max_cosine",
        "max_drop_share": 1.0,
        "holdout": 0.0,
        "log_sample": 0.0,
        "surfaces": {},
        "override_range": {"min": -1.0, "max": 1.0},
        "calibrated_override_range": {"min": 0.0, "max": 1.0},
        "last_error": None,
    }


def test_thresholds_endpoint_shows_the_file_in_force_and_its_last_error(
    server: Callable[..., httpx.Client], tmp_path: Path
) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(
        "version: v1\ndefault: 0.9\nmode: shadow\n"
        "surfaces: {home: 0.85, search: {threshold: 0.95, mode: enforce}}\n"
    )
    api = server(thresholds_file=path, thresholds_reload_s=0.05)
    body = api.get("/thresholds").json()
    assert (body["path"], body["version"], body["mode"]) == (str(path), "v1", "shadow")
    policy = {"score": "max_cosine", "max_drop_share": 1.0, "holdout": 0.0, "log_sample": 0.0}
    assert body["surfaces"] == {
        # the short form takes the default mode
        "home": {"threshold": 0.85, "mode": "shadow", **policy},
        "search": {"threshold": 0.95, "mode": "enforce", **policy},
    }
    loaded_at = body["loaded_at"]

    write_atomically(path, "version: v2\ndefault: 0.9\nsurfaces: {other: 0.5}\n")
    wait_until(lambda: api.get("/thresholds").json()["last_error"] is not None, 5)
    body = api.get("/thresholds").json()
    assert "'other' is reserved" in body["last_error"]
    assert (body["version"], body["loaded_at"]) == ("v1", loaded_at)  # the last good one


def test_thresholds_endpoint_is_503_until_a_config_loads(
    server: Callable[..., httpx.Client], tmp_path: Path
) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("default: 0.9\nmode: maybe\n")
    shown = server(thresholds_file=path).get("/thresholds")
    assert shown.status_code == 503
    body = shown.json()
    assert (body["version"], body["surfaces"], body["loaded_at"]) == (None, {}, None)
    assert "mode: Input should be 'enforce' or 'shadow'" in body["last_error"]


@pytest.mark.parametrize(
    ("examples", "struct"), [(REQUEST_EXAMPLES, FilterRequest), (RESPONSE_EXAMPLES, FilterResponse)]
)
def test_openapi_examples_are_valid_bodies(examples: dict, struct: type) -> None:
    for name, example in examples.items():
        msgspec.convert(example["value"], struct)  # raises if the example does not fit
        assert example["summary"], name
    assert {"enforce", "shadow"} <= set(examples)


def test_openapi_documents_the_examples_and_the_thresholds_endpoint(
    server: Callable[..., httpx.Client],
) -> None:
    doc = server().get("/openapi.json").json()
    post = doc["paths"]["/filter"]["post"]
    answer = post["responses"]["200"]["content"]["application/json"]["examples"]
    assert answer["shadow"]["value"]["mode"] == "shadow"
    assert answer["shadow"]["value"]["would_drop"]
    body = post["requestBody"]["content"]["application/json"]["examples"]
    assert body["shadow"]["value"]["surface"] == "search"
    schemas = doc["components"]["schemas"]
    assert len(schemas["FilterResponse"]["examples"]) == len(RESPONSE_EXAMPLES)
    assert schemas["FilterResponse"]["properties"]["mode"]["enum"] == ["enforce", "shadow"]
    assert set(doc["paths"]["/thresholds"]["get"]["responses"]) >= {"200", "503"}
