"""Reading a Prometheus histogram from a server's /metrics, and quantiles between two readings."""

from __future__ import annotations

import math
import re
import urllib.request

_BUCKET = re.compile(
    r'^(?P<name>\w+)_bucket\{(?:[^}]*,)?le="(?P<le>[^"]+)"[^}]*\} (?P<count>[0-9.e+-]+)$', re.MULTILINE)


def histogram(url: str, name: str, timeout_s: float = 10.0) -> dict[float, float]:
    """Cumulative counts by upper bound (``le``) of the histogram ``name``."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    return {float(m["le"]): float(m["count"]) for m in _BUCKET.finditer(text) if m["name"] == name}


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile of what was observed between two readings, interpolated within a bucket."""
    bounds = sorted(after)
    counts = [after[le] - before.get(le, 0.0) for le in bounds]
    if not counts or counts[-1] <= 0:
        return None
    wanted = q * counts[-1]
    lower, below = 0.0, 0.0
    for le, count in zip(bounds, counts, strict=True):
        if count >= wanted:
            if math.isinf(le):
                return lower
            share = (wanted - below) / (count - below) if count > below else 1.0
            return lower + (le - lower) * share
        lower, below = le, count
    return lower
