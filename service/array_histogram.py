"""A labelled Prometheus histogram that takes a whole array of observations in one call.

prometheus_client's ``Histogram.observe`` takes one value: a request's thousand candidate
scores would be a thousand Python calls, each taking a lock. Here a request's scores are
counted with numpy (each value's bucket found by a binary search among the bounds, then counted
per bucket: a few numpy calls for a thousand) into per-label cumulative bucket counts, exposed
at scrape time as an ordinary histogram (``_bucket{le}``, ``_sum``, ``_count``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class ArrayHistogramSeries:
    """The counts of one label value, cumulative as Prometheus's ``le`` means: count i holds
    the values ``x <= bounds[i]``; the last one, +Inf, all of them."""

    __slots__ = ("_bounds", "_counts", "_lock", "_sum")

    def __init__(self, bounds: np.ndarray) -> None:
        self._bounds = bounds
        self._counts = np.zeros(len(bounds) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, values: np.ndarray) -> None:
        """Count every value of ``values`` (finite numbers; NaN would poison the sum)."""
        # Compared in float64 so that a bound like 0.9 means 0.9, whatever the values' dtype.
        x = values.astype(np.float64, copy=False)
        # Each value's bucket: the first bound >= it (NaN sorts last: +Inf's); counted per
        # bucket, then cumulated (cheaper than sorting the values).
        per_bucket = np.bincount(self._bounds.searchsorted(x), minlength=len(self._counts))
        below = per_bucket.cumsum()
        total = float(x.sum())
        with self._lock:
            self._counts += below
            self._sum += total

    def snapshot(self) -> tuple[np.ndarray, float]:
        """Cumulative bucket counts (the last is the total count) and the sum, consistent."""
        with self._lock:
            return self._counts.copy(), self._sum


class ArrayHistogram(Collector):
    """A histogram named ``name`` with one label, fed arrays; registered on ``registry``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = np.asarray(buckets, dtype=np.float64)
        if len(bounds) == 0 or np.any(np.diff(bounds) <= 0) or not np.isfinite(bounds).all():
            raise ValueError("buckets must be finite and strictly increasing")
        self.name, self.documentation, self.label = name, documentation, label
        self._bounds = bounds
        self._les = [floatToGoString(b) for b in buckets] + ["+Inf"]
        self._series: dict[str, ArrayHistogramSeries] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def series(self, value: str) -> ArrayHistogramSeries:
        """The series of label value ``value``, created (all zeros, and exported) if new. Look
        it up once and keep it: this takes a lock."""
        with self._lock:
            found = self._series.get(value)
            if found is None:
                found = self._series[value] = ArrayHistogramSeries(self._bounds)
            return found

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            series = sorted(self._series.items())
        for value, one in series:
            cumulative, total = one.snapshot()
            family.add_metric(
                [value], list(zip(self._les, cumulative.tolist(), strict=True)), total
            )
        yield family
