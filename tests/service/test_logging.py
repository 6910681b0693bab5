"""Request ids (X-Request-ID echoed or generated) and the service's logs: JSON lines carrying
the id of the request being served, at the level the environment asks for."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conrec.service.api.middleware import RequestIdMiddleware
from conrec.service.core.config import Settings
from conrec.service.core.logs import (
    UVICORN_LOGGERS,
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    request_id,
)
from conrec.service.main import serving
from conrec.store.runs import PredictionStore
from tests.service.support import publish_run, service_process, wait_until

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def api(server: Callable[..., httpx.Client]) -> httpx.Client:
    return server()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put back the root and uvicorn loggers as they were (pytest's capture handlers too)."""
    loggers = [logging.getLogger(), *map(logging.getLogger, UVICORN_LOGGERS)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        for handler in set(logger.handlers) - set(handlers):
            logger.removeHandler(handler)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_caller_request_id_is_echoed(api: httpx.Client) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        answer = api.get(path, headers={"X-Request-ID": "rank-42/a b"})
        assert answer.headers["x-request-id"] == "rank-42/a b", path
    # Error answers carry it too: a caller's bug report can quote it.
    bad = api.post("/filter", json={"user_id": "u"}, headers={"X-Request-ID": "rank-43"})
    assert bad.status_code == 422
    assert bad.headers["x-request-id"] == "rank-43"
    assert bad.headers.get_list("x-request-id") == ["rank-43"]


def test_request_id_is_generated_when_absent_or_invalid(api: httpx.Client) -> None:
    first, second = (api.get("/healthz").headers["x-request-id"] for _ in range(2))
    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second
    for invalid in ("x" * 129, b"caf\xc3\xa9", "a\tb"):
        answer = api.get("/healthz", headers={"X-Request-ID": invalid})
        assert GENERATED.fullmatch(answer.headers["x-request-id"]), invalid
    assert api.get("/healthz", headers={"X-Request-ID": "y" * 128}).headers["x-request-id"] == (
        "y" * 128
    )


@pytest.mark.parametrize("level", ["info", "WARNING"])
def test_warning_while_serving_is_one_json_line_with_the_request_id(
    level: str,
    tmp_path: Path,
    artifact_dir: Path,
    redis_url: str,
    prefix: str,
    shared_store: PredictionStore,
    codebook_version: str,
) -> None:
    # Code 9 is outside the codebook: scoring fails open with a logged warning.
    publish_run(shared_store, "r1", codebook_version, {"w": [(0, 9, 0)]})
    env = {
        "CONREC_REDIS_URL": redis_url,
        "CONREC_STORE_PREFIX": prefix,
        "CONREC_CODEBOOK_DIR": str(artifact_dir),
        "CONREC_POINTER_CACHE_S": "0",
        "CONREC_REDIS_TIMEOUT_MS": "2000",  # a loaded test machine must not time out
        "CONREC_LOG_LEVEL": level,
    }
    log = tmp_path / "serve.log"
    with service_process(env, log) as service:
        answer = httpx.post(
            f"{service.url}/filter",
            json={"user_id": "w", "candidates": [{"item_id": "e0"}]},
            headers={"X-Request-ID": "rank-7f3a"},
        )
        assert answer.json()["fail_open_reason"] == "bad_prediction"
        wait_until(lambda: "rank-7f3a" in log.read_text(), timeout_s=10)
        lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    tagged = [r for r in records if r["request_id"] == "rank-7f3a"]
    assert len(tagged) == 1, lines
    assert tagged[0]["level"] == "WARNING"
    assert tagged[0]["logger"] == "conrec.service.filtering"
    assert "invalid codes" in tagged[0]["message"]
    assert {"ts", "level", "logger", "message", "request_id"} <= tagged[0].keys()
    # Outside a request there is no id; start-up lines, uvicorn's included, are JSON too.
    assert all(r["request_id"] is None for r in records if r is not tagged[0])
    levels = {r["level"] for r in records}
    if level == "info":
        assert "INFO" in levels
        assert any(r["logger"].startswith("uvicorn") for r in records), lines
    else:
        assert levels <= {"WARNING", "ERROR", "CRITICAL"}, lines


@pytest.mark.usefixtures("restored_logging")
def test_level_and_format_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONREC_LOG_LEVEL", "error")
    monkeypatch.setenv("CONREC_LOG_FORMAT", "TEXT")
    settings = Settings(embedded=True)
    assert (settings.log_level, settings.log_format) == ("ERROR", "text")
    out = io.StringIO()
    configure_logging(settings.log_level, settings.log_format, stream=out)
    log = logging.getLogger("service.test")
    token = request_id.set("rank-9")
    try:
        log.warning("not at ERROR")
        log.error("disk on fire")
    finally:
        request_id.reset(token)
    assert "not at ERROR" not in out.getvalue()
    assert re.fullmatch(r"\S+ \S+ ERROR service\.test \[rank-9\] disk on fire\n", out.getvalue())
    monkeypatch.setenv("CONREC_LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="log_level"):
        Settings(embedded=True)


@pytest.mark.usefixtures("restored_logging")
def test_json_lines_carry_exceptions_and_uvicorn_logs_through_one_handler() -> None:
    out = io.StringIO()
    first = configure_logging("DEBUG", "json", stream=io.StringIO())
    configure_logging("INFO", "json", stream=out)  # replaces the first handler
    assert first not in logging.getLogger().handlers
    try:
        raise RuntimeError("redis went away")
    except RuntimeError:
        logging.getLogger("service.test").exception("scoring failed; failing open")
    logging.getLogger("uvicorn.error").info("Uvicorn running")
    logging.getLogger("service.test").debug("below INFO")
    failure, uvicorn_line = map(json.loads, out.getvalue().splitlines())
    assert failure["level"] == "ERROR"
    assert failure["request_id"] is None
    assert "Traceback" in failure["exc_info"]
    assert "RuntimeError: redis went away" in failure["exc_info"]
    assert uvicorn_line["logger"] == "uvicorn.error"
    assert uvicorn_line["message"] == "Uvicorn running"


def test_unhandled_exception_trace_carries_the_request_id() -> None:
    # A route that raises: uvicorn logs the traceback after the app gave up, in the request's
    # context, so the line is tied to the request the caller can quote.
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def broken(_: object) -> None:
        raise RuntimeError("bug in a route")

    app = RequestIdMiddleware(Starlette(routes=[Route("/broken", broken)]))
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    with serving(app) as url:  # type: ignore[arg-type]  # any ASGI app serves
        # serving() keeps uvicorn's own logging config; listen where it logs tracebacks.
        uvicorn_error = logging.getLogger("uvicorn.error")
        uvicorn_error.addHandler(handler)
        try:
            answer = httpx.get(f"{url}/broken", headers={"X-Request-ID": "rank-500"})
            assert answer.status_code == 500
            wait_until(lambda: "rank-500" in out.getvalue(), timeout_s=5)
        finally:
            uvicorn_error.removeHandler(handler)
    (record,) = map(json.loads, out.getvalue().splitlines())
    assert record["request_id"] == "rank-500"
    assert "RuntimeError: bug in a route" in record["exc_info"]
