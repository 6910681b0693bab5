"""Request and response bodies of /filter, as msgspec structs.

msgspec decodes and validates a 1,000-candidate body in one pass, far faster than a pydantic
model (with which parsing was the largest cost of a request); its errors name the field
(``Expected `int`, got `float` - at `$.candidates[3].sid[1]```), which is what callers need.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from conrec.service.api.examples import REQUEST_EXAMPLES, RESPONSE_EXAMPLES
from conrec.service.core.thresholds import OTHER, Mode, Score

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# One code per codebook level: a codebook has 1 to 8 levels (`conrec.model.sids`), and the service
# checks the exact length against the loaded codebook.
SID = Annotated[list[int], msgspec.Meta(min_length=1, max_length=8)]


# gc=False: a request holds a thousand of these; untracked, they do not trigger the cyclic
# garbage collector (which otherwise cost more than the decoding). They hold no cycles.
class Candidate(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    item_id: Id
    # The item's semantic ID, one code per codebook level; if absent, looked up by item id.
    sid: SID | None = None


class ItemOnly(Candidate, forbid_unknown_fields=True, gc=False):
    """A candidate of a body in which no candidate gives a SID (see ``decode_request``)."""

    sid: None = None


class FilterRequest(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    user_id: Id
    candidates: Annotated[list[Candidate], msgspec.Meta(min_length=1)]
    # Picks the threshold and mode (enforce or shadow) of the thresholds file; one the file
    # does not list, or none, gets its defaults and is counted under the surface "other".
    surface: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    # Overrides the surface's threshold; must lie in the config's override_range.
    threshold: float | None = None
    # The codebook version the candidates' SIDs are in; absent: the service's current one.
    # SIDs of another version than the user's prediction cannot be compared with it (the
    # request fails open); candidates given by item id only are looked up in the prediction's.
    codebook_version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class ItemIdsRequest(FilterRequest, forbid_unknown_fields=True, gc=False):
    """A request whose candidates are item ids only, what ranking services send: the filter
    looks every one up in the SID table without first checking each for a SID of its own."""

    candidates: Annotated[list[ItemOnly], msgspec.Meta(min_length=1)]


class DroppedItem(msgspec.Struct):
    item_id: str
    score: float


class FilterResponse(msgspec.Struct):
    kept: list[str]
    # Empty in shadow mode: the candidates it would drop are in ``would_drop``, and kept.
    dropped: list[DroppedItem]
    threshold: float
    prediction_version: str | None
    config_version: str
    fail_open: bool
    fail_open_reason: str | None = None
    # Kept without a score: no SID given and the item id is not in the SID table (a new item).
    unscored: list[str] = []
    # The codebook version the candidates were scored in (the prediction's); None if unscored.
    codebook_version: str | None = None
    # The surface whose policy applied: the request's, or "other" if the file does not list it.
    surface: str = OTHER
    # shadow: every candidate is kept; those above the threshold are listed in ``would_drop``.
    mode: Mode = "enforce"
    # The score that was thresholded: max_cosine (a cosine) or calibrated (P(dislike)).
    score: Score = "max_cosine"
    # The surface holds this user out (a stable share of users): scored as in shadow mode,
    # every candidate kept, would-be drops in ``would_drop``, so that their later feedback
    # measures the filter.
    holdout: bool = False
    would_drop: list[DroppedItem] = []


class Error(msgspec.Struct):
    """Every 4xx/5xx body: what is wrong, in words."""

    detail: str


_decode_item_ids = msgspec.json.Decoder(ItemIdsRequest).decode
_decode_any = msgspec.json.Decoder(FilterRequest).decode


def decode_request(body: bytes) -> FilterRequest:
    """The body as an ``ItemIdsRequest`` if no candidate gives a SID, else as a FilterRequest.

    A body with SIDs fails the first decoder where its first SID is (usually the first
    candidate, so little is decoded twice); the second decoder then decodes it or reports what
    is wrong, so callers always see the errors of the full FilterRequest schema. Malformed JSON
    before any SID is reported by the first, with the same message the second would give."""
    try:
        return _decode_item_ids(body)
    except msgspec.ValidationError:
        return _decode_any(body)


encode_response = msgspec.json.Encoder().encode


def openapi_components() -> dict[str, Any]:
    """JSON schemas of the bodies, for the OpenAPI document's components."""
    _, components = msgspec.json.schema_components(
        [FilterRequest, FilterResponse, Error], ref_template="#/components/schemas/{name}"
    )
    for name, examples in (
        ("FilterRequest", REQUEST_EXAMPLES),
        ("FilterResponse", RESPONSE_EXAMPLES),
    ):
        components[name]["examples"] = [example["value"] for example in examples.values()]
    return components
