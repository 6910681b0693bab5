"""/filter fuzzed from its own OpenAPI document (schemathesis) over real HTTP: whatever a caller
sends, the answer is never a 5xx, and every answer is one the document declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from conrec.service.core.config import Settings
from conrec.service.main import create_app, serving
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.redis_support import isolated_prefix
from tests.service.support import publish_run

API_KEY = "fuzz-key"


def _document() -> dict:
    # The document depends on the routes only: an app that is never started gives it.
    app = create_app(Settings(redis_url="redis://127.0.0.1:9/0", codebook_dir=Path("/absent")))
    return app.openapi()


schema = schemathesis.openapi.from_dict(_document()).include(path="/filter")


@pytest.fixture(scope="module")
def service_url(artifact_dir, codebook_version, redis_url) -> Iterator[str]:
    """The service over real HTTP. User u-1029 (the documented example's user) has a published
    prediction, so generated bodies naming them are scored."""
    with isolated_prefix(redis_url) as prefix:
        store = PredictionStore(connect(redis_url), prefix=prefix)
        publish_run(store, "fuzz", codebook_version, {"u-1029": [(0, 0, 0), (2, 0, 0)]})
        settings_ = Settings(
            redis_url=redis_url, store_prefix=prefix, codebook_dir=artifact_dir, api_key=API_KEY
        )
        with serving(create_app(settings_)) as url:
            yield url


@schema.parametrize()
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_filter_never_answers_5xx_and_answers_only_as_documented(case, service_url) -> None:
    # A case without the header gets the key, so that it reaches the body handling; a case
    # with a generated header is a 401.
    if case.headers is None or "x-api-key" not in {k.lower() for k in case.headers}:
        case.headers = {**(case.headers or {}), "X-API-Key": API_KEY}
    response = case.call(base_url=service_url)
    assert response.status_code < 500, (response.status_code, response.text, case.body)
    case.validate_response(
        response,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ],
    )


def test_every_answer_and_examples_are_documented() -> None:
    metrics = schema.raw_schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}  # the Prometheus exposition, not JSON
    operation = schema.raw_schema["paths"]["/filter"]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "413", "422", "503"}
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"enforce", "shadow"} <= set(examples)
