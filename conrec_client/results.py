"""What a /filter call returns to the ranking service: the service's answer as it is on the wire,
and the result the client hands back (the same shape whether the service answered or the
client failed open)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

# Why the client kept every candidate without an answer from the service. The service's own
# fail-open reasons (``no_prediction``, ``redis_timeout``, ...) come through as it gave them.
TIMEOUT: Final = "timeout"  # no answer within the client's timeout
CONNECTION_ERROR: Final = "connection_error"  # refused, reset, DNS, a broken HTTP exchange
UNAVAILABLE: Final = "unavailable"  # 5xx (503: not ready), or 408/429 from a proxy
BAD_ANSWER: Final = "bad_answer"  # a 2xx/3xx whose body is not a /filter answer
CLIENT_REASONS: Final = (TIMEOUT, CONNECTION_ERROR, UNAVAILABLE, BAD_ANSWER)


class Candidate(msgspec.Struct, omit_defaults=True, gc=False):
    """A candidate with its semantic ID (one code per codebook level); plain item ids (``str``)
    are looked up in the service's item table instead."""

    item_id: str
    sid: list[int] | None = None


class ScoredItem(msgspec.Struct, gc=False):
    item_id: str
    score: float


class FilterAnswer(msgspec.Struct, gc=False):
    """The body of a 200 from POST /filter. Fields the service adds later are ignored, and
    fields an older service lacks take these defaults, so client and service upgrade apart."""

    kept: list[str]
    dropped: list[ScoredItem]
    fail_open: bool
    fail_open_reason: str | None = None
    threshold: float | None = None
    prediction_version: str | None = None
    config_version: str | None = None
    unscored: list[str] = []
    codebook_version: str | None = None
    # The surface whose policy applied: the request's, or "other" for one the service lacks.
    surface: str | None = None
    # Shadow mode: the surface is scored, nothing is dropped, would_drop is what enforce would.
    mode: str = "enforce"
    would_drop: list[ScoredItem] = []


decode_answer = msgspec.json.Decoder(FilterAnswer).decode


@dataclass(frozen=True, slots=True)
class FilterResult:
    """Rank ``kept``, in its order. ``failed_open`` means nothing was filtered (every candidate
    kept): the client got no usable answer (``answer`` is None; ``reason`` is one of
    ``CLIENT_REASONS``) or the service itself failed open (``reason`` is the service's)."""

    kept: list[str]
    dropped: list[str]
    # Shadow mode only: the ids enforce mode would have dropped; they are in ``kept``.
    would_drop: list[str]
    mode: str | None  # "enforce" | "shadow"; None when the client failed open
    failed_open: bool
    reason: str | None
    # What went wrong, in words, when the client failed open (for the caller's own logs).
    detail: str | None = None
    # The service's full answer (scores, threshold, versions, unscored ids), when it answered.
    answer: FilterAnswer | None = None
    # The request id the service logged this call under (the caller's, or one it generated);
    # the caller's own when the client failed open.
    request_id: str | None = None

    @classmethod
    def from_answer(cls, answer: FilterAnswer, request_id: str | None = None) -> FilterResult:
        return cls(
            kept=answer.kept,
            dropped=[d.item_id for d in answer.dropped],
            would_drop=[d.item_id for d in answer.would_drop],
            mode=answer.mode,
            failed_open=answer.fail_open,
            reason=answer.fail_open_reason,
            answer=answer,
            request_id=request_id,
        )

    @classmethod
    def kept_all(
        cls, item_ids: list[str], reason: str, detail: str, request_id: str | None
    ) -> FilterResult:
        return cls(
            item_ids, [], [], None, failed_open=True, reason=reason, detail=detail,
            request_id=request_id,
        )  # fmt: skip


class FilterRequestError(Exception):
    """The service refused the request with a 4xx: the caller's bug (a malformed body, an
    unknown SID length, too many candidates, a wrong API key). Raised rather than failing open,
    because it would fail the same way on every call and the filter would silently never run."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
