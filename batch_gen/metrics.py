"""Per-run metrics of the batch job, in Prometheus textfile-collector format.

A batch job is not scraped while it runs; node_exporter's textfile collector (or a push to a
Pushgateway) publishes what the run leaves in `write()`'s file.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile


class RunMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.users = Counter(
            "conrec_batch_users_written", "Users whose predictions were written.", registry=r
        )
        self.invalid_sids = Counter(
            "conrec_batch_invalid_sids",
            "Generated SIDs not in the catalogue (dropped; should stay 0).",
            registry=r,
        )
        self.failures = Counter(
            "conrec_batch_failed_users", "Users left without a prediction.", registry=r
        )
        self.users_per_s = Gauge(
            "conrec_batch_users_per_second", "Throughput of the last run.", registry=r
        )
        self.duration = Gauge(
            "conrec_batch_duration_seconds", "Wall time of the last run.", registry=r
        )
        self.last_success = Gauge(
            "conrec_batch_last_success_timestamp_seconds",
            "Unix time the last run was published.",
            registry=r,
        )

        self.invalid_count = 0  # also kept as a plain int for the run summary

    def add_invalid(self, count: int) -> None:
        self.invalid_count += count
        self.invalid_sids.inc(count)

    def write(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
