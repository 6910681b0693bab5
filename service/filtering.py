"""One /filter call, `run_filter`: admit the request (its surface's policy and threshold), resolve
the candidates' SIDs, fetch the user's prediction within budget, score, split, answer.

Anything that goes wrong on the prediction side fails open (every candidate kept, counted by
reason); only the caller's own bad input is an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from itertools import chain, compress
from operator import attrgetter

import numpy as np
import redis

from conrec.codebook.artifact import Codebook, InvalidSIDError, ItemSIDTable
from conrec.codebook.similarity import max_cosine_tables, max_cosine_vectors, use_tables
from conrec.service.api.schemas import (
    Candidate,
    DroppedItem,
    FilterRequest,
    FilterResponse,
    ItemIdsRequest,
)
from conrec.service.core.decision_log import Decision
from conrec.service.core.logs import request_id
from conrec.service.core.prediction_cache import NOT_CACHED, CachedPrediction
from conrec.service.core.sampling import HOLDOUT, LOG_SAMPLE, user_pseudonym, user_share
from conrec.service.core.state import LoadedCodebook, LoadedCodebooks, ServiceState
from conrec.service.core.thresholds import OverrideRange, Surface
from conrec.service.metrics import SurfaceMetrics
from conrec.store.values import Prediction, StoreError

logger = logging.getLogger(__name__)


# C-speed field access over a thousand candidates, cheaper than a list comprehension.
_SID = attrgetter("sid")
_ITEM_ID = attrgetter("item_id")
# The scores of a request whose candidates are all unscored (never written to).
_NONE_SCORED = np.empty(0, dtype=np.float32)


class BadRequest(ValueError):
    """The caller's input is wrong; the message says how."""


class NotReady(RuntimeError):
    """The codebook or the thresholds config is not loaded yet."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """What a request is judged by, known before any work: its surface's policy, the threshold
    and whether the user is held out."""

    codebooks: LoadedCodebooks
    config_version: str
    surface: str  # the policy's label: the request's surface, or "other"
    policy: Surface
    threshold: float
    holdout: bool
    item_ids: list[str]
    ids_only: bool  # no candidate gives a SID (an ``ItemIdsRequest``)
    salt: str  # the deployment's user-hash salt: holdout and decision-log sampling, pseudonyms


@dataclass(frozen=True, slots=True)
class Outcome:
    """What scoring came to: the candidates' scores, or why the request fails open."""

    # The candidates in the codebook version they were scored (or were to be scored) in; None:
    # SIDs of a version not loaded.
    resolved: Resolved | None
    reason: str = ""  # why every candidate is kept; "" when scored
    # [M'] the scored candidates' scores (what the score histogram counts)
    found: np.ndarray = field(default_factory=lambda: _NONE_SCORED)
    # [M] every candidate's, -inf for the unscored
    scores: np.ndarray = field(default_factory=lambda: _NONE_SCORED)

    @property
    def unknown(self) -> list[int]:
        return self.resolved.unknown if self.resolved is not None else []


async def run_filter(state: ServiceState, request: FilterRequest) -> FilterResponse:
    """The rule: a candidate whose score against the user's predicted negatives (the max cosine,
    or P(dislike) on a calibrated surface) is above the threshold is dropped.

    Raises BadRequest for bad input and NotReady before the codebook and thresholds load;
    anything that goes wrong on the prediction side fails open (every candidate kept, counted
    by reason). Codebook versions: a prediction is scored with the codebook it was made with
    (the current or the previous one loaded); the candidates' SIDs are in
    ``request.codebook_version``, else the current one's; ids without a SID are looked up in the
    prediction's version's table."""
    admitted = admit(state, request)
    resolved = resolve_request(admitted, request)
    cached, reason = await fetch_prediction(state, request.user_id)
    counted = state.metrics.surfaces.get(admitted.surface)
    outcome = score(admitted, request, resolved, cached, reason, counted)
    unscored = [admitted.item_ids[i] for i in outcome.unknown]
    # A few counter increments and one numpy histogram update per request, whatever its size.
    counted.seen.inc(len(admitted.item_ids))
    if unscored:
        counted.unscored.inc(len(unscored))
    prediction = cached.prediction if cached is not None else None
    if outcome.reason:
        state.metrics.fail_open.labels(reason=outcome.reason).inc()
        return fail_open(admitted, prediction, outcome.reason, unscored)
    return answer(state, request, admitted, outcome, prediction, unscored, counted)


def admit(state: ServiceState, request: FilterRequest) -> Admitted:
    """Parse: the request's policy and threshold; BadRequest for the caller's mistakes."""
    codebooks, thresholds = state.codebooks, state.thresholds.current
    if codebooks is None or thresholds is None:
        raise NotReady("; ".join(state.not_ready_reasons()))
    if len(request.candidates) > state.settings.max_candidates:
        raise BadRequest(
            f"{len(request.candidates)} candidates exceed the limit of "
            f"{state.settings.max_candidates} per request"
        )
    surface, policy = thresholds.policy(request.surface)
    salt = state.settings.user_hash_salt.get_secret_value()
    return Admitted(
        codebooks=codebooks,
        config_version=thresholds.version,
        surface=surface,
        policy=policy,
        threshold=choose_threshold(policy.threshold, thresholds.bounds(policy.score), request),
        holdout=_sampled(policy.holdout, salt, HOLDOUT, request.user_id),
        item_ids=list(map(_ITEM_ID, request.candidates)),
        ids_only=isinstance(request, ItemIdsRequest),
        salt=salt,
    )


def choose_threshold(
    surface_threshold: float, bounds: OverrideRange, request: FilterRequest
) -> float:
    """The request's own threshold if it gives one within ``bounds``, else its surface's."""
    if request.threshold is None:
        return surface_threshold
    if not bounds.min <= request.threshold <= bounds.max:  # False for NaN too
        raise BadRequest(
            f"threshold {request.threshold} is outside the allowed range "
            f"[{bounds.min}, {bounds.max}]"
        )
    return request.threshold


def resolve_request(admitted: Admitted, request: FilterRequest) -> Resolved | None:
    """Resolve: the candidates in the codebook version they are given in (None: a version not
    loaded); BadRequest for SIDs that version does not have."""
    named = request.codebook_version
    loaded = admitted.codebooks.current if named is None else admitted.codebooks.get(named)
    if loaded is None:
        return None
    return resolve(loaded, request.candidates, admitted.item_ids, admitted.ids_only)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request's candidates in one loaded codebook version: the scored ones as their codes,
    or (a body of item ids only) as rows of the version's precomputed item vectors."""

    loaded: LoadedCodebook
    codes: np.ndarray | None  # [M', D]
    rows: np.ndarray | None  # [M'] rows of ``loaded.vectors``
    unknown: list[int]  # indices of the candidates kept unscored

    @property
    def scored(self) -> int:
        return len(self.rows) if self.codes is None else len(self.codes)

    def located(self, item_ids: list[str]) -> tuple[Resolved, np.ndarray, np.ndarray]:
        """The scored candidates' rows in the item table (-1: not in it, a SID given) and
        codes [M', D], for the calibrated score's per-item features; candidates that carry SIDs
        are found by SID where the table's SIDs are unique (a vectorised search), else by id.
        First, the candidates to score the max cosine from: as rows of the item vectors where
        every one was found by its SID (those vectors are the SIDs decoded, and gathering them
        costs less than the dot tables once the search is paid), else ``self``."""
        items = self.loaded.items
        if self.codes is None:
            return self, self.rows, items.codes.take(self.rows, axis=0)
        by_sid = items.rows_of_codes(self.codes)
        if by_sid is not None:
            if self.loaded.vectors is not None and by_sid.min(initial=0) >= 0:
                return Resolved(self.loaded, None, by_sid, self.unknown), by_sid, self.codes
            return self, by_sid, self.codes
        if not self.unknown:
            return self, items.rows_of(item_ids), self.codes
        scored = np.delete(np.arange(len(item_ids)), self.unknown)
        return self, items.rows_of([item_ids[i] for i in scored.tolist()]), self.codes

    def scores(self, prediction: CachedPrediction) -> np.ndarray:
        """Max cosine of each scored candidate to the prediction's SIDs: [M']. Raises
        InvalidSIDError for a prediction with codes the codebook does not have."""
        codebook = self.loaded.codebook
        if self.codes is None:
            rows = self.loaded.vectors.take(self.rows, axis=0)
            return max_cosine_vectors(rows, prediction.units(codebook))
        if use_tables(codebook, len(self.codes)):
            return max_cosine_tables(codebook, self.codes, prediction.tables(codebook))
        candidates = codebook.decode_normalized(self.codes, validate=False)
        return max_cosine_vectors(candidates, prediction.units(codebook))


def resolve(
    loaded: LoadedCodebook,
    candidates: list[Candidate],
    item_ids: list[str],
    ids_only: bool = False,
) -> Resolved:
    """The candidates in ``loaded``: ids only (and item vectors at hand) as rows, else codes.
    ``ids_only``: the caller knows that no candidate gives a SID (an ``ItemIdsRequest``)."""
    sids = None if ids_only else list(map(_SID, candidates))
    # ``count`` scans at C speed where the body's kind is not known already.
    if loaded.vectors is not None and (sids is None or sids.count(None) == len(sids)):
        rows = loaded.items.rows_of(item_ids)
        absent = rows < 0
        if not absent.any():
            return Resolved(loaded, None, rows, [])
        return Resolved(loaded, None, rows[~absent], np.flatnonzero(absent).tolist())
    codes, unknown = candidate_codes(loaded.codebook, loaded.items, candidates, item_ids, sids)
    return Resolved(loaded, codes, None, unknown)


def candidate_codes(
    codebook: Codebook,
    items: ItemSIDTable,
    candidates: list[Candidate],
    item_ids: list[str],
    sids: list[list[int] | None] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Codes [M', D] of the candidates that have a SID (their own, else the item table's) and
    the indices of those that have none. An item too new for the SID table is not the caller's
    mistake: it is kept unscored rather than failing the whole ranking call. ``sids`` are the
    candidates' own SIDs if the caller has already taken them out."""
    sids = list(map(_SID, candidates)) if sids is None else sids
    # ``None in`` and ``count`` scan at C speed; only a mixed body enumerates its candidates.
    if None not in sids:
        return given_codes(codebook, sids, candidates), []
    if sids.count(None) == len(sids):
        rows = items.rows_of(item_ids)
        missing = None
    else:
        missing = [i for i, sid in enumerate(sids) if sid is None]
        rows = items.rows_of([item_ids[i] for i in missing])
    # Rows of -1 (ids the table lacks) take some row's codes here and are dropped below.
    looked_up = (
        items.codes.take(rows, axis=0)
        if len(items)
        else np.zeros((len(rows), codebook.levels), dtype=items.codes.dtype)
    )
    if missing is None:
        codes = looked_up.astype(np.int64)
        missing_at = np.arange(len(sids))
    else:
        codes = np.empty((len(sids), codebook.levels), dtype=np.int64)
        given = np.ones(len(sids), dtype=bool)
        given[missing] = False
        codes[given] = given_codes(codebook, [s for s in sids if s is not None], candidates)
        codes[missing] = looked_up
        missing_at = np.asarray(missing)
    absent = rows < 0
    if not absent.any():
        return codes, []
    unknown = missing_at[absent]
    return np.delete(codes, unknown, axis=0), unknown.tolist()


def given_codes(
    codebook: Codebook, sids: list[list[int]], candidates: list[Candidate]
) -> np.ndarray:
    """The SIDs that callers sent, as validated codes [M, D]; BadRequest says what is wrong."""
    levels = codebook.levels
    if set(map(len, sids)) - {levels}:
        wrong = next(
            i
            for i, sid in enumerate(map(_SID, candidates))
            if sid is not None and len(sid) != levels
        )
        raise BadRequest(
            f"candidates[{wrong}].sid has {len(candidates[wrong].sid)} codes; "
            f"the codebook has {levels} levels"
        )
    if codebook.size <= 256:
        # Codes of a codebook this small fit a byte: ``bytes`` converts the ints at C speed,
        # faster than ``np.fromiter``. It refuses any code outside [0, 256): those take the general
        # path below, which reports them.
        try:
            packed = bytes(chain.from_iterable(sids))
        except ValueError:
            pass
        else:
            flat = np.frombuffer(packed, dtype=np.uint8).reshape(len(sids), levels)
            try:
                return codebook.validate(flat)
            except InvalidSIDError as exc:
                raise BadRequest(f"invalid candidate sid: {exc}") from exc
    try:
        flat = np.fromiter(chain.from_iterable(sids), dtype=np.int64, count=len(sids) * levels)
        return codebook.validate(flat.reshape(len(sids), levels))
    except OverflowError as exc:
        raise BadRequest(f"invalid candidate sid: a code does not fit in 64 bits ({exc})") from exc
    except InvalidSIDError as exc:
        raise BadRequest(f"invalid candidate sid: {exc}") from exc


async def fetch_prediction(
    state: ServiceState, user_id: str
) -> tuple[CachedPrediction | None, str]:
    """The user's prediction (from the run cache, else Redis), or None and the fail-open
    reason. Never raises for Redis."""
    metrics, cache = state.metrics, state.predictions
    started, hit = time.perf_counter(), False
    try:
        async with asyncio.timeout(state.settings.redis_timeout_ms / 1000):
            run = await state.store.current_run()
            if run is None:
                return None, "no_prediction"
            cached = cache.get(run, user_id)
            if cached is NOT_CACHED:
                cached = cache.put(run, user_id, await state.store.read(run, user_id))
            else:
                hit = True
    except (TimeoutError, redis.TimeoutError):
        metrics.redis_errors.labels(kind="timeout").inc()
        return None, "redis_timeout"
    except redis.ConnectionError:
        metrics.redis_errors.labels(kind="connection").inc()
        return None, "redis_error"
    except redis.RedisError:
        metrics.redis_errors.labels(kind="other").inc()
        return None, "redis_error"
    except StoreError as exc:
        logger.warning("unreadable prediction: %s", exc)
        return None, "bad_prediction"
    finally:
        if not hit:  # the histogram times Redis, not the cache
            metrics.redis_seconds.observe(time.perf_counter() - started)
    if cached is None:
        return None, "no_prediction"
    return cached, ""


def score(
    admitted: Admitted,
    request: FilterRequest,
    resolved: Resolved | None,
    cached: CachedPrediction | None,
    reason: str,
    counted: SurfaceMetrics,
) -> Outcome:
    """Score every candidate against the prediction, or say why not (``reason``: the fetch's,
    when there is no prediction). A prediction with codes the codebook lacks fails open, and so
    does a bug here: it must not take the ranking path down with it."""
    try:
        prediction = cached.prediction if cached is not None else None
        calibrated = admitted.policy.score == "calibrated"
        if resolved is None:
            return Outcome(None, reason or "sid_codebook_unloaded")
        if prediction is None:
            # The calibrated score has the item features to score from; the max cosine nothing.
            if not (calibrated and reason == "no_prediction"):
                return Outcome(resolved, reason)
        elif prediction.codebook_version != resolved.loaded.version:
            # Only during a codebook roll (until the next nightly run): the prediction was made
            # with the other loaded version, or with one no longer loaded.
            other = admitted.codebooks.get(prediction.codebook_version)
            if other is None:
                return Outcome(resolved, "codebook_mismatch")
            if not admitted.ids_only and any(map(_SID, request.candidates)):
                return Outcome(resolved, "sid_codebook_mismatch")
            resolved = resolve(other, request.candidates, admitted.item_ids, admitted.ids_only)
        if calibrated:
            found, reason = calibrated_scores(resolved, cached, admitted.item_ids, counted)
            if reason:
                return Outcome(resolved, reason)
        else:
            found = resolved.scores(cached) if resolved.scored else _NONE_SCORED
        scores = with_unscored(found, resolved.unknown, len(admitted.item_ids))
        return Outcome(resolved, "", found, scores)
    except InvalidSIDError as exc:
        logger.warning("prediction %s has invalid codes: %s", cached.prediction.version, exc)
        return Outcome(resolved, "bad_prediction")
    except Exception:
        logger.exception("scoring failed; failing open")
        return Outcome(resolved, "internal_error")


def with_unscored(found: np.ndarray, unknown: list[int], candidates: int) -> np.ndarray:
    """[M] scores from the scored candidates' [M'], -inf (never dropped) for the unscored."""
    if not unknown:
        return found
    scores = np.full(candidates, -np.inf, dtype=np.float32)
    scored = np.ones(candidates, dtype=bool)
    scored[unknown] = False
    scores[scored] = found
    return scores


def calibrated_scores(
    resolved: Resolved,
    cached: CachedPrediction | None,
    item_ids: list[str],
    counted: SurfaceMetrics,
) -> tuple[np.ndarray, str]:
    """P(dislike) of the scored candidates (`conrec.codebook.calibration`) and "" , or no scores and
    the fail-open reason. With a prediction carrying the per-user part of a loaded calibration:
    the full model; else (no prediction, or a run without that part) the items-only model,
    counted by reason."""
    loaded = resolved.loaded
    if loaded.calibration is None:
        return _NONE_SCORED, "no_calibration"
    resolved, rows, codes = resolved.located(item_ids)
    first = codes[:, 0].astype(np.int64)
    prediction = cached.prediction if cached is not None else None
    aligned = (
        loaded.calibrations.get(prediction.calibration_version)
        if prediction is not None and prediction.user_features is not None
        else None
    )
    if aligned is None:
        counted.items_only["no_prediction" if prediction is None else "no_user_features"].inc()
        return loaded.calibration.score(rows, first), ""
    cosine = resolved.scores(cached)  # validates the prediction's codes
    depth = cached.prefixes(loaded.codebook).depth(codes)
    return aligned.score(rows, first, cosine, depth, prediction.user_features), ""


def fail_open(
    admitted: Admitted, prediction: Prediction | None, reason: str, unscored: list[str]
) -> FilterResponse:
    """Every candidate kept, and why."""
    return FilterResponse(
        kept=admitted.item_ids,
        dropped=[],
        threshold=admitted.threshold,
        prediction_version=prediction.version if prediction else None,
        config_version=admitted.config_version,
        fail_open=True,
        fail_open_reason=reason,
        unscored=unscored,
        surface=admitted.surface,
        mode=admitted.policy.mode,
        score=admitted.policy.score,
        holdout=admitted.holdout,
    )


def answer(
    state: ServiceState,
    request: FilterRequest,
    admitted: Admitted,
    outcome: Outcome,
    prediction: Prediction | None,
    unscored: list[str],
    counted: SurfaceMetrics,
) -> FilterResponse:
    """Split and answer: the candidates above the threshold dropped (or, in shadow mode and for
    held-out users, listed as would-be drops and kept), counted, and sampled to the decision
    log."""
    policy, item_ids = admitted.policy, admitted.item_ids
    kept, dropped, dropped_scores, capped = split(
        item_ids, outcome.scores, admitted.threshold, _max_drops(policy, len(item_ids))
    )
    counted_mode = "holdout" if admitted.holdout else policy.mode
    counted.requests[counted_mode].inc()
    counted.dropped[counted_mode].inc(len(dropped))
    if capped:
        counted.capped.inc(capped)
    calibrated = policy.score == "calibrated"
    (counted.probabilities if calibrated else counted.scores).observe(outcome.found)
    drops = [DroppedItem(item_id=i, score=s) for i, s in zip(dropped, dropped_scores, strict=True)]
    # Shadow mode and held-out users are scored and counted exactly as enforce would, and keep
    # every candidate.
    passive = admitted.holdout or policy.mode == "shadow"
    response = FilterResponse(
        kept=item_ids if passive else kept,
        dropped=[] if passive else drops,
        threshold=admitted.threshold,
        prediction_version=prediction.version if prediction else None,
        config_version=admitted.config_version,
        fail_open=False,
        unscored=unscored,
        codebook_version=outcome.resolved.loaded.version,
        surface=admitted.surface,
        mode=policy.mode,
        score=policy.score,
        holdout=admitted.holdout,
        would_drop=drops if passive else [],
    )
    if state.decision_log is not None and _sampled(
        policy.log_sample, admitted.salt, LOG_SAMPLE, request.user_id
    ):
        state.decision_log.write(
            decisions(
                request.user_id, admitted.salt, item_ids, outcome.scores, set(dropped), response
            )
        )
    return response


_FEW = 64


def split(
    item_ids: list[str], scores: np.ndarray, threshold: float, max_drops: int | None = None
) -> tuple[list[str], list[str], list[float], int]:
    """Kept ids, dropped ids, the dropped ids' scores, and how many more were above the
    threshold but kept by the cap: drop means score > threshold, at most ``max_drops`` of them
    (the highest scores)."""
    drop = scores > threshold
    if not drop.any():
        return item_ids, [], [], 0
    dropped_at = np.flatnonzero(drop)
    capped = 0
    if max_drops is not None and len(dropped_at) > max_drops:
        capped = len(dropped_at) - max_drops
        highest = np.argsort(-scores[dropped_at], kind="stable")[:max_drops]
        dropped_at = np.sort(dropped_at[highest])
        drop = np.zeros(len(scores), dtype=bool)
        drop[dropped_at] = True
    if len(dropped_at) <= _FEW:
        # A few drops (the usual case): delete them from a copy, back to front, rather than
        # building a thousand-element mask list for ``compress``.
        kept = item_ids.copy()
        for i in dropped_at[::-1].tolist():
            del kept[i]
    else:
        kept = list(compress(item_ids, (~drop).tolist()))
    return kept, [item_ids[i] for i in dropped_at.tolist()], scores[dropped_at].tolist(), capped


def decisions(
    user_id: str,
    salt: str,
    item_ids: list[str],
    scores: np.ndarray,
    dropped: set[str],
    response: FilterResponse,
) -> list[Decision]:
    """One request's decisions as decision-log lines (`conrec.service.core.decision_log`)."""
    now, user = time.time(), user_pseudonym(salt, user_id)
    above = "would_drop" if response.holdout or response.mode == "shadow" else "drop"
    return [
        Decision(
            ts=now,
            request_id=request_id.get(),
            user=user,
            surface=response.surface,
            mode=response.mode,
            holdout=response.holdout,
            item=item,
            score=float(score) if np.isfinite(score) else None,
            threshold=response.threshold,
            decision=above if item in dropped else "keep",
            run=response.prediction_version,
            codebook=response.codebook_version,
            config=response.config_version,
        )
        for item, score in zip(item_ids, scores.tolist(), strict=True)
    ]


def _sampled(share: float, salt: str, purpose: bytes, user_id: str) -> bool:
    return share > 0 and user_share(salt, purpose, user_id) < share


def _max_drops(policy: Surface, candidates: int) -> int | None:
    return None if policy.max_drop_share >= 1 else int(policy.max_drop_share * candidates)
