"""The array-fed histogram: its buckets against numpy, and its exposition as a histogram."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conrec.service.array_histogram import ArrayHistogram

BUCKETS = (0.0, 0.5, 0.8, 0.9, 1.0)


def exported(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    """Every sample of the exposition text (what Prometheus would read), by name and labels."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_bucket_counts_match_numpy_including_values_on_the_bounds() -> None:
    registry = CollectorRegistry()
    histogram = ArrayHistogram("x_score", "Scores.", "surface", BUCKETS, registry)
    rng = np.random.default_rng(7)
    batches = [rng.uniform(-1, 1.2, size=n).astype(np.float32) for n in (1000, 3, 0, 250)] + [
        np.array(BUCKETS, dtype=np.float32)
    ]  # le is inclusive: each bound in its own bucket
    series = histogram.series("home")
    for batch in batches:
        series.observe(batch)
    every = np.concatenate(batches).astype(np.float64)

    samples = exported(registry)
    for le in (*BUCKETS, np.inf):
        label = "+Inf" if le == np.inf else str(le)
        key = ("x_score_bucket", (("le", label), ("surface", "home")))
        assert samples[key] == np.count_nonzero(every <= le), le
    assert samples[("x_score_count", (("surface", "home"),))] == len(every)
    assert samples[("x_score_sum", (("surface", "home"),))] == pytest.approx(every.sum())


def test_a_series_is_exported_at_zero_once_looked_up() -> None:
    registry = CollectorRegistry()
    histogram = ArrayHistogram("x_score", "Scores.", "surface", BUCKETS, registry)
    assert not [k for k in exported(registry) if k[0].startswith("x_score")]
    assert histogram.series("search") is histogram.series("search")
    samples = exported(registry)
    assert samples[("x_score_count", (("surface", "search"),))] == 0
    assert samples[("x_score_bucket", (("le", "+Inf"), ("surface", "search")))] == 0


@pytest.mark.parametrize("buckets", [(), (0.5, 0.5), (0.9, 0.1), (0.1, float("inf"))])
def test_buckets_must_be_finite_and_increasing(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        ArrayHistogram("x_score", "Scores.", "surface", buckets, CollectorRegistry())
