"""Distributions a resource publishes on the server's ``/metrics``, besides its gauges."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class Histogram:
    """Observations counted in buckets (upper bounds, ascending; one more for everything above the last).
    A resource keeps one, calls :meth:`observe`, and returns it from ``Resource.histograms``; the server
    publishes it as a Prometheus histogram."""

    doc: str
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations at or below it)`` for each bound and ``+Inf``, as Prometheus wants them."""
        running, rows = 0, []
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            rows.append((bound, float(running)))
        return rows
