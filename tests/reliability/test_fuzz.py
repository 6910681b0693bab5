"""Fuzzing as a user's security team would (`make fuzz`): `conrec serve` as its own process, with
an API key, a published run, calibrated and holdout surfaces and the decision log on, driven by
10,000 requests that schemathesis generates from the service's own OpenAPI document, every
route. Any 5xx, any answer the document does not declare, or a process whose memory grows past
its idle size plus the run cache's configured capacity plus HEADROOM_MB fails the run: beyond
its bounded run cache, its memory must not grow with the requests it answers."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from conrec.codebook.artifact import load_item_sids
from conrec.codebook.calibration import FEATURES, ITEM_FEATURES, LogisticModel, save_calibration
from conrec.service.core.config import Settings
from conrec.service.main import create_app
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import private_redis
from tests.service.support import ITEMS, build_artifact, service_process

pytestmark = pytest.mark.fuzz

API_KEY = "fuzz-key"
# Routes without parameters have few distinct requests to generate: hypothesis stops there.
EXAMPLES = {"/filter": 10_000, "/readyz": 100, "/healthz": 100, "/thresholds": 100, "/metrics": 100}
CACHE_MB, HEADROOM_MB = 16, 64
MEMORY_BOUND_MB = CACHE_MB + HEADROOM_MB
THRESHOLDS = """\
version: fuzz
default: 0.9
holdout: 0.1
log_sample: 0.5
max_drop_share: 0.5
surfaces:
  home: 0.9
  feed: {score: calibrated, threshold: 0.5}
  search: {mode: shadow}
"""
SEEN: dict = {"rss_mb": [], "statuses": []}


def _document() -> dict:
    app = create_app(Settings(redis_url="redis://127.0.0.1:9/0", codebook_dir=Path("/absent")))
    return app.openapi()


schema = schemathesis.openapi.from_dict(_document())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    tmp = tmp_path_factory.mktemp("fuzz")
    version = build_artifact(tmp / "codebook")
    table = load_item_sids(tmp / "codebook")
    calibration = save_calibration(
        tmp / "codebook", codebook_version=version, item_ids=table.item_ids,
        item_features=np.full((len(table), 2), 0.5), prefix_features=np.full((4, 2), 0.5),
        mf_items=np.zeros((len(table), 3)),
        full=LogisticModel(np.ones(len(FEATURES)), -3.0, np.zeros(6), np.ones(6)),
        items_only=LogisticModel(np.ones(len(ITEM_FEATURES)), -1.0, np.zeros(2), np.ones(2)),
        meta={"fitted": "fuzz"},
    )  # fmt: skip
    (tmp / "thresholds.yaml").write_text(THRESHOLDS)
    with private_redis(tmp) as (_, url):
        store = PredictionStore(connect(url), prefix="fuzz")
        writer = store.begin_run("fuzz", codebook_version=version, model_version="m", k=2,
                                 user_features=4, calibration_version=calibration)  # fmt: skip
        users = ["u-1029", *(f"user-{i}" for i in range(200))]
        codes = np.array([[ITEMS["e0"], ITEMS["e2"]]] * len(users), dtype=np.uint16)
        writer.write_batch(users, codes, np.zeros((len(users), 4)))
        writer.publish()
        env = {
            "CONREC_REDIS_URL": url,
            "CONREC_STORE_PREFIX": "fuzz",
            "CONREC_CODEBOOK_DIR": str(tmp / "codebook"),
            "CONREC_THRESHOLDS_FILE": str(tmp / "thresholds.yaml"),
            "CONREC_API_KEY": API_KEY,
            "CONREC_DECISION_LOG": str(tmp / "decisions.jsonl"),
            "CONREC_LOG_LEVEL": "WARNING",
            "CONREC_PREDICTION_CACHE_BYTES": str(CACHE_MB * 2**20),
        }
        with service_process(env, tmp / "serve.log") as process:
            body = {"user_id": "u-1029", "candidates": [{"item_id": "e0"}]}
            for _ in range(200):  # warm: the idle size is that of a process that has served
                httpx.post(f"{process.url}/filter", headers={"X-API-Key": API_KEY}, json=body)
            process.idle_mb = process.rss_mb
            SEEN["started"] = time.monotonic()
            yield process


def _fuzzed(path: str):
    @schema.include(path=path).parametrize()
    @settings(max_examples=EXAMPLES[path], deadline=None, suppress_health_check=list(HealthCheck))
    def check(case, service) -> None:
        # Most cases carry the key, so that they reach the body's handling; one in ten keeps
        # whatever key header was generated (usually a wrong one: a 401).
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
        if zlib.crc32(repr((case.body, case.headers)).encode()) % 10:
            case.headers = {**headers, "X-API-Key": API_KEY}
        response = case.call(base_url=service.url)
        SEEN["statuses"].append(response.status_code)
        case.validate_response(
            response,
            checks=[
                checks.not_a_server_error,
                checks.status_code_conformance,
                checks.content_type_conformance,
                checks.response_schema_conformance,
                checks.response_headers_conformance,
            ],
        )
        if len(SEEN["statuses"]) % 500 == 0:
            SEEN["rss_mb"].append(service.rss_mb)
            assert service.rss_mb < service.idle_mb + MEMORY_BOUND_MB, (service.rss_mb, SEEN)

    return check


test_filter = _fuzzed("/filter")
test_readyz = _fuzzed("/readyz")
test_healthz = _fuzzed("/healthz")
test_thresholds = _fuzzed("/thresholds")
test_metrics = _fuzzed("/metrics")


def test_report(service) -> None:
    """The figures docs/reliability.md records (runs last in the module)."""
    statuses = SEEN["statuses"]
    assert len(statuses) >= 10_000
    assert all(s < 500 for s in statuses)
    growth = service.rss_mb - service.idle_mb
    print(
        json.dumps(
            {
                "requests": len(statuses),
                "by_status": {str(s): statuses.count(s) for s in sorted(set(statuses))},
                "idle_rss_mb": round(service.idle_mb, 1),
                "final_rss_mb": round(service.rss_mb, 1),
                "max_rss_mb": round(max(SEEN["rss_mb"], default=service.rss_mb), 1),
                "bound_mb": MEMORY_BOUND_MB,
                "seconds": round(time.monotonic() - SEEN["started"], 1),
            }
        )
    )
    assert growth < MEMORY_BOUND_MB
