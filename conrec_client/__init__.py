"""Client of the CoNRec filter service for ranking services (``pip install
'conrec-filter[client]'``). It imports httpx and msgspec only, never the service's packages,
so a ranking service carries neither FastAPI nor Redis nor NumPy's scoring code."""

from conrec_client.client import AsyncFilterClient, FilterClient
from conrec_client.results import (
    CLIENT_REASONS,
    Candidate,
    FilterAnswer,
    FilterRequestError,
    FilterResult,
)

__all__ = [
    "CLIENT_REASONS",
    "AsyncFilterClient",
    "Candidate",
    "FilterAnswer",
    "FilterClient",
    "FilterRequestError",
    "FilterResult",
]
