"""conrec_client against the real service over real HTTP, and against stub servers that are
slow, broken or absent: answers match the service's, failures keep every candidate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conrec.service.main import serving
from conrec.store.runs import PredictionStore
from conrec_client import (
    AsyncFilterClient,
    Candidate,
    FilterClient,
    FilterRequestError,
    FilterResult,
)
from conrec_client.results import decode_answer
from tests.redis_support import free_port
from tests.service.support import publish_run

IDS = ["e0", "e1", "e0+e1", "e0+.5e1", "e2"]
TIGHT_S, SLOW_S = 0.025, 0.2
# Generous for a loaded test machine, and still well short of the stub's SLOW_S.
MARGIN_S = 0.1


@pytest.fixture
def service(
    server: Callable[..., httpx.Client], shared_store: PredictionStore, codebook_version: str
) -> httpx.Client:
    """The real service; user "u" has one predicted negative, e0."""
    publish_run(shared_store, "r1", codebook_version, {"u": [(0, 0, 0)]})
    return server(api_key="s3cret")


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    """A server that answers /filter under several prefixes: slowly, with 503, with garbage."""

    async def slow(request: Request) -> Response:
        body = json.loads(await request.body())
        await asyncio.sleep(SLOW_S)
        ids = [c["item_id"] for c in body["candidates"]]
        return JSONResponse({"kept": ids, "dropped": [], "fail_open": False})

    async def unavailable(_: Request) -> Response:
        return JSONResponse({"detail": "not ready: codebook not loaded"}, status_code=503)

    async def garbage(_: Request) -> Response:
        return Response(b"<html>login</html>", media_type="text/html")

    endpoints = {"slow": slow, "unavailable": unavailable, "garbage": garbage}
    app = Starlette(
        routes=[Route(f"/{name}/filter", f, methods=["POST"]) for name, f in endpoints.items()]
    )
    with serving(app) as url:  # type: ignore[arg-type]  # any ASGI app serves
        yield url


def expected(service: httpx.Client, body: dict) -> dict:
    """The service's own answer to ``body``, asked without the client."""
    return service.post("/filter", json=body, headers={"x-api-key": "s3cret"}).json()


def assert_matches(result: FilterResult, answer: dict) -> None:
    assert result.kept == answer["kept"]
    assert result.dropped == [d["item_id"] for d in answer["dropped"]]
    assert result.failed_open is answer["fail_open"]
    assert result.reason == answer["fail_open_reason"]
    assert result.answer is not None
    assert result.answer.prediction_version == answer["prediction_version"]


def test_sync_client_answers_as_the_service_does(service: httpx.Client) -> None:
    with FilterClient(str(service.base_url), api_key="s3cret", timeout=5) as client:
        result = client.filter("u", IDS)
        assert_matches(result, expected(service, {"user_id": "u", "candidates": ids(IDS)}))
        assert result.dropped == ["e0"]
        assert result.mode == "enforce"
        assert not result.failed_open
        # SIDs given by the caller, and a per-request threshold.
        sids = client.filter(
            "u", [Candidate("x", sid=[0, 1, 0]), "e0+.5e1"], threshold=0.7, surface="home"
        )
        assert sids.dropped == ["x", "e0+.5e1"]  # cos 0.71 and 0.89 > 0.7
        assert sids.answer is not None
        assert sids.answer.threshold == 0.7
        # A user without predictions: the service fails open; the client passes that on and
        # counts only its own fail-opens.
        nobody = client.filter("nobody", IDS)
        assert (nobody.kept, nobody.failed_open, nobody.reason) == (IDS, True, "no_prediction")
        assert client.fail_opens == {}


def test_request_ids_reach_the_service_and_come_back(service: httpx.Client, stub: str) -> None:
    with FilterClient(str(service.base_url), api_key="s3cret", timeout=5) as client:
        assert client.filter("u", IDS, request_id="rank-42").request_id == "rank-42"
        generated = client.filter("u", IDS).request_id
        assert generated
        assert generated != "rank-42"
    with FilterClient(f"{stub}/slow", timeout=0.025) as client:
        assert client.filter("u", IDS, request_id="rank-43").request_id == "rank-43"


def test_async_client_answers_as_the_service_does_concurrently(service: httpx.Client) -> None:
    answer = expected(service, {"user_id": "u", "candidates": ids(IDS)})

    async def main() -> list[FilterResult]:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        async with AsyncFilterClient(
            str(service.base_url), api_key="s3cret", timeout=5, limits=limits
        ) as client:
            return await asyncio.gather(*(client.filter("u", IDS) for _ in range(20)))

    for result in asyncio.run(main()):
        assert_matches(result, answer)


def test_shadow_surface_keeps_everything_and_reports_would_be_drops(
    server: Callable[..., httpx.Client],
    shared_store: PredictionStore,
    codebook_version: str,
    tmp_path: Path,
) -> None:
    publish_run(shared_store, "r1", codebook_version, {"u": [(0, 0, 0)]})
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("default: 0.9\nsurfaces: {trial: {threshold: 0.8, mode: shadow}}\n")
    service = server(thresholds_file=thresholds)
    with FilterClient(str(service.base_url), timeout=5) as client:
        shadow = client.filter("u", IDS, surface="trial")
        enforced = client.filter("u", IDS, surface="home")
    assert (shadow.mode, shadow.kept, shadow.dropped) == ("shadow", IDS, [])
    assert shadow.would_drop == ["e0", "e0+.5e1"]  # cos 1 and 0.89 > 0.8
    assert not shadow.failed_open
    assert shadow.answer is not None
    assert shadow.answer.surface == "trial"
    assert (enforced.mode, enforced.dropped, enforced.would_drop) == ("enforce", ["e0"], [])
    assert enforced.answer is not None
    assert enforced.answer.surface == "other"


def test_client_errors_raise_rather_than_fail_open(service: httpx.Client) -> None:
    url = str(service.base_url)
    with FilterClient(url, api_key="s3cret", timeout=5) as client:
        with pytest.raises(FilterRequestError, match="outside the allowed range") as raised:
            client.filter("u", IDS, threshold=5.0)
        assert raised.value.status_code == 422
        with pytest.raises(FilterRequestError) as raised:
            client.filter("u", [])  # at least one candidate
        assert raised.value.status_code == 422
        assert client.fail_opens == {}
    with FilterClient(url, api_key="wrong", timeout=5) as client:
        with pytest.raises(FilterRequestError, match="X-API-Key") as raised:
            client.filter("u", IDS)
        assert raised.value.status_code == 401

    async def main() -> None:
        async with AsyncFilterClient(url, api_key="s3cret", timeout=5) as client:
            with pytest.raises(FilterRequestError) as raised:
                await client.filter("u", IDS, threshold=5.0)
            assert raised.value.status_code == 422

    asyncio.run(main())


def assert_failed_open(result: FilterResult, reason: str) -> None:
    assert result.kept == IDS
    assert (result.dropped, result.would_drop, result.mode) == ([], [], None)
    assert result.failed_open
    assert result.reason == reason
    assert result.answer is None


def test_slow_server_fails_open_after_the_timeout_and_is_counted(stub: str) -> None:
    registry = CollectorRegistry()
    with FilterClient(f"{stub}/slow", timeout=TIGHT_S, registry=registry) as client:
        started = time.perf_counter()
        result = client.filter("u", IDS)
        elapsed = time.perf_counter() - started
    assert_failed_open(result, "timeout")
    assert elapsed < TIGHT_S + MARGIN_S, elapsed
    assert client.fail_opens == {"timeout": 1}

    async def main() -> tuple[FilterResult, float]:
        # Same registry: the two clients share one counter.
        async with AsyncFilterClient(f"{stub}/slow", timeout=TIGHT_S, registry=registry) as aio:
            started = time.perf_counter()
            result = await aio.filter("u", IDS)
            assert aio.fail_opens == {"timeout": 1}
            return result, time.perf_counter() - started

    result, elapsed = asyncio.run(main())
    assert_failed_open(result, "timeout")
    assert elapsed < TIGHT_S + MARGIN_S, elapsed
    sample = registry.get_sample_value
    assert sample("conrec_client_fail_open_total", {"reason": "timeout"}) == 2
    assert sample("conrec_client_fail_open_total", {"reason": "connection_error"}) == 0


def test_unreachable_or_broken_server_fails_open(stub: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    # A refusal is immediate; a loose timeout keeps a busy machine from turning it into one.
    with FilterClient(nobody, timeout=2) as client:
        assert_failed_open(client.filter("u", IDS), "connection_error")
        # An iterator is used up by encoding the body; failing open still keeps every id.
        assert_failed_open(client.filter("u", iter(IDS)), "connection_error")
    with FilterClient(f"{stub}/unavailable", timeout=1) as client:
        result = client.filter("u", IDS)
        assert_failed_open(result, "unavailable")
        assert "not ready" in (result.detail or "")
    with FilterClient(f"{stub}/garbage", timeout=1) as client:
        assert_failed_open(client.filter("u", IDS), "bad_answer")

    async def main() -> None:
        async with AsyncFilterClient(nobody, timeout=2) as client:
            assert_failed_open(await client.filter("u", IDS), "connection_error")
            assert client.fail_opens == {"connection_error": 1}

    asyncio.run(main())


def test_client_imports_nothing_of_the_service() -> None:
    # A ranking service installs `conrec-filter[client]`: httpx and msgspec, nothing else.
    code = (
        "import sys, conrec_client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'service', 'batch_gen', 'codebook', 'model', 'conrec', 'fastapi', 'redis', "
        "'numpy', 'prometheus_client'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).parent,
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


def ids(names: list[str]) -> list[dict]:
    return [{"item_id": n} for n in names]


def test_answers_of_older_and_newer_services_decode() -> None:
    # Client and service upgrade apart: unknown fields are ignored, missing ones defaulted.
    older = decode_answer(b'{"kept": ["a"], "dropped": [], "fail_open": false}')
    assert (older.mode, older.would_drop, older.surface) == ("enforce", [], None)
    newer = decode_answer(
        b'{"kept": ["a", "b"], "dropped": [], "fail_open": false, "mode": "shadow",'
        b' "would_drop": [{"item_id": "b", "score": 0.95, "rank": 2}], "explain": {"k": 1}}'
    )
    result = FilterResult.from_answer(newer)
    assert (result.mode, result.kept, result.would_drop) == ("shadow", ["a", "b"], ["b"])
