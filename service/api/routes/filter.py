"""POST /filter.

The body is read and validated by hand (see ``conrec.service.api.schemas``) rather than declared as
a FastAPI body parameter, which would parse the JSON to Python objects and validate them after.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from starlette.routing import request_response

from conrec.service.api.deps import check_api_key
from conrec.service.api.examples import REQUEST_EXAMPLES, RESPONSE_EXAMPLES
from conrec.service.api.schemas import FilterRequest, decode_request, encode_response
from conrec.service.core.state import ServiceState
from conrec.service.filtering import BadRequest, NotReady, run_filter


class PlainRoute(APIRoute):
    """Documented like any FastAPI route, served like a plain Starlette one: the endpoint takes
    the Request and returns a Response, without FastAPI's per-request dependency solving and
    response handling (about half of the framework's own cost per request; docs/benchmarks.md).
    HTTPException still becomes the usual JSON error through the app's exception handlers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = request_response(self.endpoint)


router = APIRouter(tags=["filter"], route_class=PlainRoute)


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_OPENAPI = {
    "parameters": [
        {
            "name": "x-api-key",
            "in": "header",
            "required": False,
            "description": "Required when the service is configured with an API key.",
            "schema": {"type": "string", "title": "X-Api-Key"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/FilterRequest"},
                "examples": REQUEST_EXAMPLES,
            }
        },
    },
    "responses": {
        "200": {
            "description": "Kept and dropped candidates; fail_open says why nothing was dropped "
            "when the prediction side could not be used (kept is then every candidate). A surface "
            "in shadow mode keeps every candidate and lists those it would drop in would_drop.",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/FilterResponse"},
                    "examples": RESPONSE_EXAMPLES,
                }
            },
        },
        "400": _error("The body is not JSON."),
        "401": _error("An API key is configured and X-API-Key is missing or wrong."),
        "413": _error("The body exceeds the configured size limit."),
        "422": _error(
            "The body does not match FilterRequest, a SID has the wrong length or an "
            "out-of-range code, too many candidates, or a threshold outside the allowed range."
        ),
        "503": _error("Not ready: the codebook or the thresholds config is not loaded yet."),
    },
}


# The state and the API key are read here rather than through FastAPI dependencies (which a
# PlainRoute does not run): same checks, same order (the key is checked before the body is
# read). The X-API-Key header is documented through ``_OPENAPI``.
@router.post("/filter", openapi_extra=_OPENAPI)
async def filter_candidates(request: Request) -> Response:
    """Drop the candidates that resemble the user's predicted negatives.

    Redis trouble or a user without predictions never fails the call: every candidate is
    kept and ``fail_open`` says why. Bad input is a 4xx whose ``detail`` says what is wrong.
    """
    state: ServiceState = request.app.state.service
    check_api_key(state, request.headers.get("x-api-key"))
    body = await read_body(request, state.settings.max_body_bytes)
    payload = parse_request(body)
    try:
        result = await run_filter(state, payload)
    except BadRequest as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except NotReady as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"not ready: {exc}") from exc
    return Response(encode_response(result), media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        if int(declared) > limit:
            raise _too_large(limit)
        # The HTTP server never passes on more than the declared length: read it in one go.
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"request body exceeds {limit} bytes")


def parse_request(body: bytes) -> FilterRequest:
    try:
        return decode_request(body)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: test it first
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed JSON body: {exc}") from exc
