"""Prometheus metrics of the filter service, on an injectable registry.

Names carry their unit (``_seconds``, ``_total``); labels are small fixed sets (route, status,
reason, kind, version, role, mode, and surface: the names in the thresholds file plus ``other``)
and never a user or item id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conrec.service.array_histogram import ArrayHistogram, ArrayHistogramSeries
from conrec.service.core.thresholds import MODES, OTHER

# The modes requests and drops are counted under: the surface's, or `holdout` for a user the
# surface holds out (scored as in shadow, never filtered).
COUNTED_MODES = (*MODES, "holdout")

# Sub-millisecond resolution at the low end: the hot path's goal is p99 <= 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
FAIL_OPEN_REASONS = (
    "no_prediction",
    "no_calibration",
    "redis_timeout",
    "redis_error",
    "bad_prediction",
    "codebook_mismatch",
    "sid_codebook_unloaded",
    "sid_codebook_mismatch",
    "internal_error",
)
# Max cosine lies in [-1, 1]; the buckets are finest where thresholds are set (0.8 - 0.99), so
# that the histogram tells what a threshold there would drop. None below 0 (le="0.0" holds
# every negative cosine): a histogram with a negative bucket exports no _sum and _count.
SCORE_BUCKETS = (
    0.0, 0.25, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75,
    0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0,
)  # fmt: skip
# P(dislike) of the calibrated score: thresholds sit where few positives are lost (0.5 - 0.9).
PROBABILITY_BUCKETS = (
    0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0,
)  # fmt: skip
# Why a calibrated surface scored a user with the items-only model.
ITEMS_ONLY_REASONS = ("no_prediction", "no_user_features")

if TYPE_CHECKING:
    from conrec.service.core.prediction_cache import PredictionCache


@dataclass(frozen=True, slots=True)
class SurfaceMetrics:
    """The series of one surface label, resolved once per thresholds config: ``labels()``
    takes a lock and builds a key on every call, too slow for the request path."""

    seen: Counter
    unscored: Counter
    capped: Counter
    requests: dict[str, Counter]  # by counted mode
    dropped: dict[str, Counter]  # by counted mode
    scores: ArrayHistogramSeries  # max cosine
    probabilities: ArrayHistogramSeries  # calibrated P(dislike)
    items_only: dict[str, Counter]  # by ITEMS_ONLY_REASONS


class SurfaceIndex:
    """Surface label -> its series, for the configured surfaces and ``other``. ``apply``
    replaces the index whole when the thresholds config changes, creating the new surfaces'
    series (at zero, so that dashboards see them before traffic does)."""

    def __init__(
        self,
        seen: Counter,
        unscored: Counter,
        capped: Counter,
        requests: Counter,
        dropped: Counter,
        scores: ArrayHistogram,
        probabilities: ArrayHistogram,
        items_only: Counter,
    ) -> None:
        self._parents = (seen, unscored, capped, requests, dropped, scores, probabilities,
                         items_only)  # fmt: skip
        self._other = self._resolve(OTHER)
        self._by_label = {OTHER: self._other}

    def apply(self, surfaces: Iterable[str]) -> None:
        self._by_label = {OTHER: self._other} | {name: self._resolve(name) for name in surfaces}

    def get(self, label: str) -> SurfaceMetrics:
        # A label missing here is a surface removed from the config while its request awaited
        # Redis: counted under ``other`` then.
        return self._by_label.get(label, self._other)

    def _resolve(self, label: str) -> SurfaceMetrics:
        seen, unscored, capped, requests, dropped, scores, probabilities, items_only = self._parents
        return SurfaceMetrics(
            seen=seen.labels(surface=label),
            unscored=unscored.labels(surface=label),
            capped=capped.labels(surface=label),
            requests={m: requests.labels(surface=label, mode=m) for m in COUNTED_MODES},
            dropped={m: dropped.labels(surface=label, mode=m) for m in COUNTED_MODES},
            scores=scores.series(label),
            probabilities=probabilities.series(label),
            items_only={r: items_only.labels(surface=label, reason=r) for r in ITEMS_ONLY_REASONS},
        )


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    request_seconds: Histogram
    requests: Counter
    candidates_seen: Counter
    candidates_dropped: Counter
    candidates_unscored: Counter
    candidates_capped: Counter
    filter_requests: Counter
    max_cosine: ArrayHistogram
    calibrated_probability: ArrayHistogram
    items_only: Counter
    fail_open: Counter
    redis_seconds: Histogram
    redis_errors: Counter
    prediction_age_seconds: Gauge
    prediction_published_timestamp_seconds: Gauge
    store_up: Gauge
    config_info: Gauge
    config_valid: Gauge
    config_loaded_timestamp_seconds: Gauge
    config_reload_failures: Counter
    codebook_info: Gauge
    codebook_items: Gauge
    codebook_loaded_timestamp_seconds: Gauge
    codebook_reload_failures: Counter
    calibration_info: Gauge
    calibration_reload_failures: Counter
    decision_log_lines: Counter
    decision_log_dropped: Counter
    # Per surface label, the series a request counts on; ``surfaces.apply`` on a config change.
    surfaces: SurfaceIndex = field(init=False)

    def __post_init__(self) -> None:
        index = SurfaceIndex(
            seen=self.candidates_seen,
            unscored=self.candidates_unscored,
            capped=self.candidates_capped,
            requests=self.filter_requests,
            dropped=self.candidates_dropped,
            scores=self.max_cosine,
            probabilities=self.calibrated_probability,
            items_only=self.items_only,
        )
        object.__setattr__(self, "surfaces", index)  # the dataclass is frozen

    def watch_cache(self, cache: PredictionCache) -> None:
        self.registry.register(RunCacheCollector(cache))

    def set_config_version(self, version: str) -> None:
        self.config_info.clear()
        self.config_info.labels(version=version).set(1)

    def set_codebooks(self, loaded: Iterable[LoadedVersion], loaded_at: float) -> None:
        """One series per loaded codebook version and per calibration, with its role."""
        self.codebook_info.clear()
        self.codebook_items.clear()
        self.calibration_info.clear()
        for version in loaded:
            self.codebook_info.labels(
                version=version.version, role=version.role, table_version=version.table_version
            ).set(1)
            self.codebook_items.labels(version=version.version).set(version.items)
            for i, calibration in enumerate(version.calibrations):
                role = "current" if version.role == "current" and i == 0 else "previous"
                self.calibration_info.labels(
                    version=calibration, codebook_version=version.version, role=role
                ).set(1)
        self.codebook_loaded_timestamp_seconds.set(loaded_at)


@dataclass(frozen=True)
class LoadedVersion:
    """What the metrics show of one loaded codebook version."""

    version: str
    role: str  # current | previous
    table_version: str
    items: int
    calibrations: tuple[str, ...]  # the current one first


def create_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Register the service's metrics on ``registry`` (a fresh one by default)."""
    registry = CollectorRegistry() if registry is None else registry
    metrics = Metrics(
        registry=registry,
        request_seconds=Histogram(
            "conrec_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        requests=Counter(
            "conrec_http_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=registry,
        ),
        candidates_seen=Counter(
            "conrec_filter_candidates_seen",
            "Candidates received by /filter, by surface.",
            ["surface"],
            registry=registry,
        ),
        candidates_dropped=Counter(
            "conrec_filter_candidates_dropped",
            "Candidates that resemble a predicted negative, by surface and mode: dropped "
            "(enforce), or kept and counted as would-be drops (shadow, and holdout: users the "
            "surface holds out).",
            ["surface", "mode"],
            registry=registry,
        ),
        candidates_capped=Counter(
            "conrec_filter_candidates_capped",
            "Candidates above the threshold kept because the surface's max_drop_share of the "
            "request was reached, by surface.",
            ["surface"],
            registry=registry,
        ),
        candidates_unscored=Counter(
            "conrec_filter_candidates_unscored",
            "Candidates kept unscored, by surface: no SID given and their item id is not in the "
            "SID table.",
            ["surface"],
            registry=registry,
        ),
        filter_requests=Counter(
            "conrec_filter_requests",
            "/filter requests scored (not failed open), by surface and mode (enforce, shadow, "
            "holdout).",
            ["surface", "mode"],
            registry=registry,
        ),
        max_cosine=ArrayHistogram(
            "conrec_filter_max_cosine",
            "Max cosine of each scored candidate to the user's predicted negatives, by surface.",
            "surface",
            SCORE_BUCKETS,
            registry,
        ),
        calibrated_probability=ArrayHistogram(
            "conrec_filter_calibrated_probability",
            "Calibrated P(dislike) of each scored candidate on surfaces with the calibrated "
            "score, by surface.",
            "surface",
            PROBABILITY_BUCKETS,
            registry,
        ),
        items_only=Counter(
            "conrec_filter_items_only",
            "Requests on calibrated surfaces scored by the items-only model, by surface and "
            "reason (no_prediction: the user has none; no_user_features: their run carries no "
            "per-user part for a loaded calibration).",
            ["surface", "reason"],
            registry=registry,
        ),
        fail_open=Counter(
            "conrec_filter_fail_open",
            "Requests answered by keeping every candidate, by reason.",
            ["reason"],
            registry=registry,
        ),
        redis_seconds=Histogram(
            "conrec_redis_request_duration_seconds",
            "Time spent fetching a user's prediction from Redis (run cache hits excluded).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        redis_errors=Counter(
            "conrec_redis_errors",
            "Failed prediction reads, by kind (timeout, connection, other).",
            ["kind"],
            registry=registry,
        ),
        prediction_age_seconds=Gauge(
            "conrec_prediction_age_seconds",
            "Age of the published prediction run at scrape time (now - its created_at); +Inf "
            "while no run is known.",
            registry=registry,
        ),
        prediction_published_timestamp_seconds=Gauge(
            "conrec_prediction_published_timestamp_seconds",
            "Unix time the published prediction run was created, as last read from the store.",
            registry=registry,
        ),
        store_up=Gauge(
            "conrec_store_up",
            "1 if the last read of the published-run pointer succeeded, 0 if Redis failed.",
            registry=registry,
        ),
        config_info=Gauge(
            "conrec_thresholds_config_info",
            "The thresholds config in use: 1, labelled with its version.",
            ["version"],
            registry=registry,
        ),
        config_valid=Gauge(
            "conrec_thresholds_config_valid",
            "1 if the last read of the thresholds file succeeded, 0 if it kept the old config.",
            registry=registry,
        ),
        config_loaded_timestamp_seconds=Gauge(
            "conrec_thresholds_config_loaded_timestamp_seconds",
            "Unix time the thresholds config in use was loaded.",
            registry=registry,
        ),
        config_reload_failures=Counter(
            "conrec_thresholds_config_reload_failures",
            "Thresholds files rejected (unreadable or invalid).",
            registry=registry,
        ),
        codebook_info=Gauge(
            "conrec_codebook_info",
            "Codebook versions loaded: 1 each, labelled with version, role (current, previous) "
            "and the item table's version.",
            ["version", "role", "table_version"],
            registry=registry,
        ),
        codebook_items=Gauge(
            "conrec_codebook_items",
            "Items in the SID table of each loaded codebook version.",
            ["version"],
            registry=registry,
        ),
        codebook_loaded_timestamp_seconds=Gauge(
            "conrec_codebook_loaded_timestamp_seconds",
            "Unix time the current codebook (or its item table) was loaded.",
            registry=registry,
        ),
        codebook_reload_failures=Counter(
            "conrec_codebook_reload_failures",
            "Codebook artifacts that failed to load (the loaded versions were kept).",
            registry=registry,
        ),
        calibration_info=Gauge(
            "conrec_calibration_info",
            "Calibration artifacts loaded: 1 each, labelled with version, codebook version and "
            "role (current, previous).",
            ["version", "codebook_version", "role"],
            registry=registry,
        ),
        calibration_reload_failures=Counter(
            "conrec_calibration_reload_failures",
            "Calibration artifacts refused (corrupt, or made for another codebook); the loaded "
            "ones were kept.",
            registry=registry,
        ),
        decision_log_lines=Counter(
            "conrec_decision_log_lines",
            "Decisions written to the decision log (CONREC_DECISION_LOG).",
            registry=registry,
        ),
        decision_log_dropped=Counter(
            "conrec_decision_log_dropped_lines",
            "Decisions lost because the decision log's queue was full or the write failed.",
            registry=registry,
        ),
    )
    for reason in FAIL_OPEN_REASONS:
        metrics.fail_open.labels(reason=reason)
    return metrics


class RunCacheCollector(Collector):
    """The run cache's size and counts, read at scrape time: the request path only bumps plain
    integers on the cache."""

    def __init__(self, cache: PredictionCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        cache = self._cache
        yield GaugeMetricFamily(
            "conrec_prediction_cache_entries",
            "Users of the published run held in the run cache (misses included).",
            value=len(cache),
        )
        yield GaugeMetricFamily(
            "conrec_prediction_cache_bytes",
            "Bytes the run cache's entries hold (estimated: arrays plus a fixed overhead each).",
            value=cache.usage.bytes,
        )
        lookups = CounterMetricFamily(
            "conrec_prediction_cache_lookups",
            "Run cache lookups by result: hit (no Redis read), miss (read from Redis).",
            labels=["result"],
        )
        lookups.add_metric(["hit"], cache.hits)
        lookups.add_metric(["miss"], cache.misses)
        yield lookups
        evictions = CounterMetricFamily(
            "conrec_prediction_cache_evictions",
            "Run cache entries dropped, by reason: capacity (least recently used), run (the "
            "published-run pointer moved), erased (`conrec store forget`).",
            labels=["reason"],
        )
        for reason, count in cache.evicted.items():
            evictions.add_metric([reason], count)
        yield evictions
