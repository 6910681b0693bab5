"""Per-run metrics of the batch job, in Prometheus textfile-collector format.

A batch job is not scraped while it runs; node_exporter's textfile collector (or a push to a
Pushgateway) publishes what the run leaves in `write()`'s file.

The last-success timestamp is what the "batch job stale" alert reads, so a failed run never
writes it as 0 (that would read as "last success in 1970" and page at once, then hide the real
age): it carries over the previous file's value, or else the published run's creation time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from conrec.store.runs import PredictionStore

log = logging.getLogger(__name__)
LAST_SUCCESS = "conrec_batch_last_success_timestamp_seconds"
PUSH_JOB = "conrec-batch"


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
        self.last_run = Gauge(
            "conrec_batch_last_run_timestamp_seconds",
            "Unix time the last run ended, whatever its outcome.",
            registry=r,
        )
        self.last_run_success = Gauge(
            "conrec_batch_last_run_success",
            "1 if the last run published its predictions (or found them already published), "
            "0 if it failed or was not published.",
            registry=r,
        )
        # Registered only once there is a value: an unset gauge would be written as 0.
        self._last_success: Gauge | None = None
        self.published_at: float | None = None

        self.invalid_count = 0  # also kept as a plain int for the run summary

    def add_invalid(self, count: int) -> None:
        self.invalid_count += count
        self.invalid_sids.inc(count)

    def mark_published(self) -> None:
        self.published_at = time.time()

    def finish(
        self,
        path: str | Path | None,
        *,
        succeeded: bool,
        store: PredictionStore | None = None,
    ) -> None:
        """Stamp the run's outcome and end time. Without a publish in this run, last_success is
        the previous file's value, else the creation time of the store's published run (a fresh
        volume has no previous file), else left out."""
        self.last_run.set(time.time())
        self.last_run_success.set(1 if succeeded else 0)
        last_success = self.published_at
        if last_success is None and path is not None:
            last_success = previous_last_success(Path(path))
        if last_success is None and store is not None:
            try:
                run = store.current_run()
            except Exception:  # the store may be what failed the run
                log.warning("could not read the published run for %s", LAST_SUCCESS, exc_info=True)
            else:
                last_success = run.created_at if run else None
        if last_success is not None:
            if self._last_success is None:
                self._last_success = Gauge(
                    LAST_SUCCESS, "Unix time the last successful run published.",
                    registry=self.registry,
                )  # fmt: skip
            self._last_success.set(last_success)

    def write(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)

    def push(self, gateway: str) -> None:
        """Replace this job's group on a Pushgateway (where no node_exporter reads the file).
        A failed push is logged, not raised: monitoring must not fail a published run, and the
        stale-batch alert then fires on the missing update."""
        try:
            push_to_gateway(gateway, job=PUSH_JOB, registry=self.registry, timeout=10)
        except OSError:
            log.exception("could not push the run's metrics to %s", gateway)


def previous_last_success(path: Path) -> float | None:
    """The last-success timestamp a previous run left in ``path``, if any."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAST_SUCCESS and sample.value > 0:
                return sample.value
    return None
