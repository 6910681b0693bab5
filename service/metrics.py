"""Prometheus metrics of the filter service, on an injectable registry.

Names carry their unit (``_seconds``, ``_total``); labels are small fixed sets (route, status,
reason, kind, version, role) and never a user or item id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Sub-millisecond resolution at the low end: the hot path's goal is p99 <= 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
FAIL_OPEN_REASONS = (
    "no_prediction",
    "redis_timeout",
    "redis_error",
    "bad_prediction",
    "codebook_mismatch",
    "sid_codebook_unloaded",
    "sid_codebook_mismatch",
    "internal_error",
)

if TYPE_CHECKING:
    from service.core.state import Catalogue


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    request_seconds: Histogram
    requests: Counter
    candidates_seen: Counter
    candidates_dropped: Counter
    candidates_unscored: Counter
    fail_open: Counter
    redis_seconds: Histogram
    redis_errors: Counter
    prediction_age_seconds: Gauge
    config_info: Gauge
    config_valid: Gauge
    config_loaded_timestamp_seconds: Gauge
    config_reload_failures: Counter
    codebook_info: Gauge
    codebook_items: Gauge
    codebook_loaded_timestamp_seconds: Gauge
    codebook_reload_failures: Counter

    def set_config_version(self, version: str) -> None:
        self.config_info.clear()
        self.config_info.labels(version=version).set(1)

    def set_codebooks(self, catalogue: Catalogue) -> None:
        """One series per loaded codebook version, labelled current or previous."""
        self.codebook_info.clear()
        self.codebook_items.clear()
        for loaded in catalogue.by_version.values():
            role = "current" if loaded is catalogue.current else "previous"
            table = str(loaded.items.table_version)
            self.codebook_info.labels(version=loaded.version, role=role, table_version=table).set(1)
            self.codebook_items.labels(version=loaded.version).set(len(loaded.items))
        self.codebook_loaded_timestamp_seconds.set(catalogue.current.loaded_at)


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
            "conrec_filter_candidates_seen", "Candidates received by /filter.", registry=registry
        ),
        candidates_dropped=Counter(
            "conrec_filter_candidates_dropped",
            "Candidates dropped because they resemble a predicted negative.",
            registry=registry,
        ),
        candidates_unscored=Counter(
            "conrec_filter_candidates_unscored",
            "Candidates kept unscored: no SID given and their item id is not in the SID table.",
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
            "Time spent fetching a user's prediction from Redis.",
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
            "Age of the prediction run served most recently (now - run created_at).",
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
    )
    for reason in FAIL_OPEN_REASONS:
        metrics.fail_open.labels(reason=reason)
    return metrics
