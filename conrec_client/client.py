"""Sync and async clients of POST /filter for ranking services, failing open on the client side.

The filter is an optimisation of the ranking, never a dependency of it: when the service does
not answer within ``timeout`` (default 25 ms), cannot be reached, or answers 5xx (or a proxy's
408/429), the call returns every candidate (``failed_open=True``, ``reason`` one of
``CLIENT_REASONS``) and counts it, instead of raising or retrying. A 4xx is the caller's bug
and raises ``FilterRequestError`` (see there). One pooled httpx client per instance: create
the client once per process (or event loop) and share it between threads (sync) or tasks
(async).

Timeouts: httpx bounds each phase (waiting for a pooled connection, connecting, writing, each
read) by ``timeout``, not the call as a whole. The async client also bounds the whole call by
``timeout``; the sync one cannot interrupt a blocking call, so a server that stalls in several
phases can hold it up to a few times ``timeout`` (in practice one read phase dominates).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import Counter
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
import msgspec

from conrec_client.results import (
    BAD_ANSWER,
    CLIENT_REASONS,
    CONNECTION_ERROR,
    TIMEOUT,
    UNAVAILABLE,
    Candidate,
    FilterRequestError,
    FilterResult,
    decode_answer,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter as PromCounter

DEFAULT_TIMEOUT_S = 0.025
FAIL_OPEN_METRIC = "conrec_client_fail_open_total"
# Proxies and ingresses answer these for load, not for a bad request: fail open.
_TRANSIENT_4XX = frozenset({408, 429})
_REQUEST_ID = "x-request-id"


class _Body(msgspec.Struct, omit_defaults=True, gc=False):
    user_id: str
    candidates: list[Candidate]
    surface: str | None = None
    threshold: float | None = None
    codebook_version: str | None = None


_encode = msgspec.json.Encoder().encode
_ERROR = msgspec.json.Decoder(dict[str, Any]).decode
_metrics_lock = threading.Lock()
_registry_counters: weakref.WeakKeyDictionary[CollectorRegistry, PromCounter] = (
    weakref.WeakKeyDictionary()
)


def _prometheus_counter(registry: CollectorRegistry) -> PromCounter:
    """The fail-open counter in ``registry``, created once per registry (a second client on the
    same registry shares it rather than failing on a duplicate name)."""
    from prometheus_client import Counter as PromCounter

    with _metrics_lock:
        counter = _registry_counters.get(registry)
        if counter is None:
            counter = PromCounter(
                FAIL_OPEN_METRIC,
                "Filter calls the client answered itself, keeping every candidate, by reason.",
                ["reason"],
                registry=registry,
            )
            for reason in CLIENT_REASONS:  # exported as 0 from the start, so rates work
                counter.labels(reason=reason)
            _registry_counters[registry] = counter
        return counter


class _FilterClientBase:
    """What the sync and async clients share: the request body, reading the answer, counting."""

    def __init__(
        self,
        *,
        api_key: str | None,
        timeout: float,
        registry: CollectorRegistry | None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._headers = {"content-type": "application/json"}
        if api_key is not None:
            self._headers["x-api-key"] = api_key
        # Client-side fail-opens by reason (the service counts its own in its metrics).
        self.fail_opens: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._prometheus = None if registry is None else _prometheus_counter(registry)

    @staticmethod
    def _body(
        user_id: str,
        candidates: Iterable[str | Candidate],
        surface: str | None,
        threshold: float | None,
        codebook_version: str | None,
    ) -> tuple[bytes, list[Candidate]]:
        """The request body, and the candidates as a list: a failing-open call returns them
        all, even when ``candidates`` was an iterator that encoding used up."""
        listed = [Candidate(c) if isinstance(c, str) else c for c in candidates]
        return _encode(_Body(user_id, listed, surface, threshold, codebook_version)), listed

    def _headers_for(self, request_id: str | None) -> dict[str, str]:
        return self._headers if request_id is None else {**self._headers, _REQUEST_ID: request_id}

    def _fail_open(
        self, candidates: list[Candidate], reason: str, detail: str, request_id: str | None
    ) -> FilterResult:
        with self._count_lock:
            self.fail_opens[reason] += 1
        if self._prometheus is not None:
            self._prometheus.labels(reason=reason).inc()
        return FilterResult.kept_all([c.item_id for c in candidates], reason, detail, request_id)

    def _read(
        self, candidates: list[Candidate], response: httpx.Response, request_id: str | None
    ) -> FilterResult:
        status = response.status_code
        request_id = response.headers.get(_REQUEST_ID, request_id)
        if 400 <= status < 500 and status not in _TRANSIENT_4XX:
            raise FilterRequestError(status, _detail(response))
        if status >= 400:
            detail = f"HTTP {status}: {_detail(response)}"
            return self._fail_open(candidates, UNAVAILABLE, detail, request_id)
        try:
            answer = decode_answer(response.content)
        except msgspec.DecodeError as exc:  # ValidationError included
            return self._fail_open(candidates, BAD_ANSWER, f"HTTP {status}: {exc}", request_id)
        return FilterResult.from_answer(answer, request_id)


def _detail(response: httpx.Response) -> str:
    """The error body's ``detail`` (every service error has one), else the start of the body."""
    try:
        return str(_ERROR(response.content)["detail"])
    except (msgspec.DecodeError, KeyError):
        return response.text[:200]


def _transport_failure(exc: httpx.TransportError) -> str:
    return TIMEOUT if isinstance(exc, httpx.TimeoutException) else CONNECTION_ERROR


class FilterClient(_FilterClientBase):
    """Blocking client of POST /filter (see the module docstring for fail-open and timeouts).

    ``base_url``: the service, e.g. ``http://conrec-filter:8000``. ``api_key``: sent as
    X-API-Key. ``limits``: the connection pool (httpx's default: 100 connections, 20 kept
    alive); size ``max_keepalive_connections`` to the caller's concurrency so that calls do not
    pay a new connection. ``registry``: a prometheus_client registry to count fail-opens in as
    ``conrec_client_fail_open_total{reason}``; ``fail_opens`` counts them in any case.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        limits: httpx.Limits | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(api_key=api_key, timeout=timeout, registry=registry)
        self._http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits() if limits is None else limits,
        )

    def filter(
        self,
        user_id: str,
        candidates: Iterable[str | Candidate],
        *,
        surface: str | None = None,
        threshold: float | None = None,
        codebook_version: str | None = None,
        request_id: str | None = None,
    ) -> FilterResult:
        """Filter ``candidates`` (item ids, or ``Candidate``s with their SIDs) for ``user_id``.
        ``request_id`` is sent as X-Request-ID, which the service's log lines for this call
        carry; without one the service makes one up (``FilterResult.request_id`` either way).
        One attempt, no retries. Raises only ``FilterRequestError`` (a 4xx)."""
        body, listed = self._body(user_id, candidates, surface, threshold, codebook_version)
        try:
            response = self._http.post(
                "/filter", content=body, headers=self._headers_for(request_id)
            )
        except httpx.TransportError as exc:
            return self._fail_open(listed, _transport_failure(exc), repr(exc), request_id)
        return self._read(listed, response, request_id)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncFilterClient(_FilterClientBase):
    """The asyncio twin of ``FilterClient`` (same arguments and results); the whole call,
    not only each phase, is bounded by ``timeout``. Use it from one event loop."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        limits: httpx.Limits | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(api_key=api_key, timeout=timeout, registry=registry)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits() if limits is None else limits,
        )

    async def filter(
        self,
        user_id: str,
        candidates: Iterable[str | Candidate],
        *,
        surface: str | None = None,
        threshold: float | None = None,
        codebook_version: str | None = None,
        request_id: str | None = None,
    ) -> FilterResult:
        """See ``FilterClient.filter``."""
        body, listed = self._body(user_id, candidates, surface, threshold, codebook_version)
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http.post(
                    "/filter", content=body, headers=self._headers_for(request_id)
                )
        except TimeoutError:
            detail = f"no answer within {self.timeout} s"
            return self._fail_open(listed, TIMEOUT, detail, request_id)
        except httpx.TransportError as exc:
            return self._fail_open(listed, _transport_failure(exc), repr(exc), request_id)
        return self._read(listed, response, request_id)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
