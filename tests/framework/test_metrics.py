"""Histograms for /metrics."""

import pytest


def test_a_histogram_counts_in_buckets_and_cumulates_for_prometheus():
    from ovserve.framework.metrics import Histogram

    histogram = Histogram("waits", (0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert histogram.total == pytest.approx(3.65)


