"""FastAPI dependencies: the service state, and the optional API key check (which /filter
calls itself, on its raw-request fast path)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from conrec.service.core.state import ServiceState


# Dependencies are async: FastAPI runs a plain `def` dependency in its threadpool, a thread hop
# per request for what is an attribute lookup.
async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


def check_api_key(state: ServiceState, x_api_key: str | None) -> None:
    """Raise 401 unless no key is configured or ``x_api_key`` (the header's value) matches."""
    expected = state.settings.api_key
    if expected is None:
        return
    if x_api_key is None or not secrets.compare_digest(
        x_api_key.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong X-API-Key header")
