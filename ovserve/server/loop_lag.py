"""How late the HTTP event loop runs: the delay every request's I/O sees on top of its own work."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Histogram

#: Fine buckets around the few-millisecond range the server must stay under.
LAG_BUCKETS = (0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.010, 0.015, 0.020,
               0.030, 0.050, 0.100, 0.250, 1.0)


async def watch_loop_lag(histogram: Histogram, interval: float = 0.005) -> None:
    """Sleep ``interval`` seconds over and over; record how much later than asked each wake-up came."""
    while True:
        asked = time.perf_counter() + interval
        await asyncio.sleep(interval)
        histogram.observe(max(0.0, time.perf_counter() - asked))
