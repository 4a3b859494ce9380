"""Open-loop load: requests arrive at Poisson times at a given rate, whether or not earlier ones are done.

Closed-loop clients (benchmarks/run.py) wait for an answer before they send again, so a slow server
is sent less; real users do not wait for each other. Here the arrival times of each rate are drawn
once from a seeded exponential distribution of gaps (the same times on every run and for every
target) over ``duration`` seconds, and request ``i`` is sent at its time with the workload's prompt
``i % 8``, 128 output tokens (``ignore_eos``), temperature 0, streamed with usage. Times count from
the arrival time, not from when the request went out, so a late client does not hide queueing.

Per rate: requests sent / completed / failed, TTFT p50/p99, each request's mean inter-token gap
(p50 over requests), and **goodput**: requests per second of the arrival window that met both
service-level objectives (TTFT <= 1 s and mean inter-token gap <= 50 ms by default), and the share
of sent requests that did. Against ovserve the run also samples ``/metrics`` each second (requests
running in the engine, waiting, KV-cache use) and reads the engine queue-time histogram.

Two targets: ovserve over HTTP (:func:`run_http`), and the bare engine in-process
(:func:`run_engine`: a ``step()`` loop that adds each request at its arrival time, as
benchmarks/engine_direct.py does for closed loops). The saturation rate, the most requests per
second the engine can finish, is its tok/s at 64 streams / 128 tokens: given by the user, taken
from the newest ``results-*.json`` that has an engine level at 64 streams, or measured.

Usage (normally through ``python -m benchmarks.workloads openloop``)::

    python -m benchmarks.openloop engine --model PATH.gguf --rates 1,2 --duration 60 --json-out engine.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import server_metrics
from benchmarks.loadgen import LoadConfig
from benchmarks.stream_client import Prepared, chat_body, run_closed, run_open
from benchmarks.tables import markdown, ms
from benchmarks.workload import RequestTiming, messages_for, percentile

#: Streams at which the engine's throughput is taken as its saturation.
SATURATION_STREAMS = 64
QUEUE_TIME = "ovserve_engine_queue_time_seconds"
_GAUGES = {
    "running": "ovserve_engine_requests_running",
    "waiting_for_tokens": "ovserve_engine_requests_waiting_for_tokens",
    "kv_cache_percent": "ovserve_engine_kv_cache_usage_percent",
}


@dataclass(frozen=True)
class Slo:
    """Service-level objectives of one request: first token and mean gap between later tokens."""

    ttft_s: float = 1.0
    itl_s: float = 0.050

    def describe(self) -> str:
        """The objectives in words, for the report."""
        return f"TTFT <= {self.ttft_s * 1000:.0f} ms and mean inter-token <= {self.itl_s * 1000:.0f} ms"


@dataclass(frozen=True)
class OpenLoopConfig:
    """One open-loop run: the rates (requests/s), each for ``duration_s`` seconds of arrivals."""

    rates: tuple[float, ...]
    duration_s: float
    max_tokens: int = 128
    seed: int = 0
    drain_s: float = 120.0
    slo: Slo = field(default_factory=Slo)


def parse_float_list(text: str) -> list[float]:
    """Parse a comma-separated list of positive numbers such as ``"0.5,1,2"``."""
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return values


def arrival_times(rate: float, duration_s: float, seed: int) -> list[float]:
    """Poisson arrivals: seconds from the start, exponential gaps of mean ``1 / rate``, below ``duration_s``.

    The generator is seeded with the seed and the rate, so each rate has its own fixed sequence.
    """
    rng = random.Random(f"{seed}:{rate:g}")
    times: list[float] = []
    at = rng.expovariate(rate)
    while at < duration_s:
        times.append(at)
        at += rng.expovariate(rate)
    return times


def mean_itl(timing: RequestTiming) -> float | None:
    """A request's mean inter-token gap in seconds (None with a single token)."""
    return sum(timing.itl) / len(timing.itl) if timing.itl else None


def within_slo(timing: RequestTiming, slo: Slo) -> bool:
    """True if the request completed and met both objectives."""
    if not timing.ok or timing.ttft is None or timing.ttft > slo.ttft_s:
        return False
    gap = mean_itl(timing)
    return gap is None or gap <= slo.itl_s


def summarize_rate(rate: float, timings: list[RequestTiming], duration_s: float, wall_s: float, slo: Slo,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Reduce the requests of one rate to its figures; goodput is per second of the arrival window."""
    done = [t for t in timings if t.ok]
    failed = [t for t in timings if not t.ok]
    ttfts = [t.ttft for t in done if t.ttft is not None]
    gaps = [g for g in (mean_itl(t) for t in done) if g is not None]
    good = sum(within_slo(t, slo) for t in timings)
    tokens = sum(t.output_tokens for t in done)
    return {
        "rate_rps": rate,
        "duration_s": duration_s,
        "sent": len(timings),
        "arrived_rps": round(len(timings) / duration_s, 3),
        "completed": len(done),
        "errors": len(failed),
        "first_error": failed[0].error if failed else "",
        "wall_s": round(wall_s, 2),
        "output_tokens": tokens,
        "tokens_per_s": round(tokens / max(wall_s, 1e-9), 1),
        "ttft_p50_ms": ms(percentile(ttfts, 50)),
        "ttft_p99_ms": ms(percentile(ttfts, 99)),
        "mean_itl_p50_ms": ms(percentile(gaps, 50)),
        "mean_itl_p99_ms": ms(percentile(gaps, 99)),
        "within_slo": good,
        "goodput_rps": round(good / duration_s, 3),
        "slo_share": round(good / len(timings), 3) if timings else None,
        "slo": slo.describe(),
        **(extra or {}),
    }


# --------------------------------------------------------------------------- over HTTP


def metrics_url(base_url: str) -> str:
    """``/metrics`` of the server whose OpenAI base URL is ``base_url`` (``http://host:port/v3``)."""
    return base_url.rstrip("/").rsplit("/", 1)[0] + "/metrics"


def _gauges(text: str) -> dict[str, float]:
    """The engine gauges of one /metrics answer."""
    values = {}
    for key, name in _GAUGES.items():
        match = re.search(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", text, re.MULTILINE)
        if match:
            values[key] = float(match[1])
    return values


async def _sample_gauges(url: str, stop: asyncio.Event, interval_s: float = 1.0) -> dict[str, float]:
    """Poll the engine gauges until ``stop``; return each one's maximum (empty if /metrics fails)."""
    peaks: dict[str, float] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while not stop.is_set():
            try:
                async with session.get(url) as resp:
                    if resp.status != 200:
                        return peaks
                    for key, value in _gauges(await resp.text()).items():
                        peaks[key] = max(value, peaks.get(key, value))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return peaks
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    return peaks


def _queue_histogram(url: str) -> dict[float, float] | None:
    """The engine queue-time histogram, or None if the server has none."""
    try:
        return server_metrics.histogram(url, QUEUE_TIME) or None
    except OSError:
        return None


def _queue_quantiles(before: dict[float, float] | None, after: dict[float, float] | None) -> dict[str, Any]:
    """Engine queue time p50/p99 between two readings (ms)."""
    if not before or not after:
        return {}
    return {f"engine_queue_p{q}_ms": ms(server_metrics.quantile(before, after, q / 100)) for q in (50, 99)}


def http_requests(count: int, max_tokens: int, config: LoadConfig) -> list[Prepared]:
    """The open-loop requests: request ``i`` carries the workload's prompt ``i % 8``."""
    return [chat_body(messages_for(i), max_tokens, config) for i in range(count)]


async def http_rate(base_url: str, rate: float, cfg: OpenLoopConfig,
                    requests: list[Prepared] | None = None) -> dict[str, Any]:
    """One rate against a server: a warm-up request, then the arrivals (``requests`` or the workload's)."""
    load = LoadConfig(base_url=base_url, max_tokens=cfg.max_tokens)
    arrivals = arrival_times(rate, cfg.duration_s, cfg.seed)
    if requests is None:
        requests = http_requests(len(arrivals), cfg.max_tokens, load)
    requests = [requests[i % len(requests)] for i in range(len(arrivals))]
    await run_closed(http_requests(1, 16, load), 1, load)
    url = metrics_url(base_url)
    before = _queue_histogram(url)
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(_sample_gauges(url, stop))
    run = await run_open(requests, arrivals, load, cfg.drain_s)
    stop.set()
    peaks = await sampler
    extra = {"max_in_flight": run.max_in_flight, "send_lag_p99_ms": run.send_lag_p99_ms,
             **{f"server_max_{k}": v for k, v in peaks.items()}, **_queue_quantiles(before, _queue_histogram(url))}
    return summarize_rate(rate, [r.timing for r in run.results], cfg.duration_s, run.wall_s, cfg.slo, extra)


async def run_http(base_url: str, cfg: OpenLoopConfig, requests: list[Prepared] | None = None,
                   label: str = "ovserve") -> list[dict[str, Any]]:
    """Every rate against one server, in the order given, printing a line per rate."""
    rows = []
    for rate in cfg.rates:
        row = {"target": label, **await http_rate(base_url, rate, cfg, requests)}
        print_row(row)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the engine in-process


def _engine_open(engine: Any, arrivals: list[float], gen_cfg: Any, deadline_s: float,
                 first_id: int) -> tuple[list[RequestTiming], float, int, int]:
    """Add request ``i`` at ``arrivals[i]`` and step while any is in flight; (timings, wall, max in flight, steps)."""
    pending = deque(enumerate(arrivals))
    active: dict[int, Any] = {}
    timings = [RequestTiming(ok=False, error="not finished by the deadline") for _ in arrivals]
    steps = most = 0
    t0 = time.perf_counter()
    while (pending or active) and time.perf_counter() - t0 < deadline_s:
        now = time.perf_counter()
        while pending and t0 + pending[0][1] <= now:
            index, at = pending.popleft()
            flight = engine.add(first_id + index, index, gen_cfg)
            flight.start = flight.last = t0 + at  # count from the arrival, not from when the loop got to it
            active[index] = flight
        if not active:
            time.sleep(max(0.0, t0 + pending[0][1] - time.perf_counter()))
            continue
        most = max(most, len(active))
        engine.pipe.step()
        steps += 1
        now = time.perf_counter()
        for index in [i for i, flight in active.items() if engine.drain(flight, now)]:
            timings[index] = active.pop(index).timing
    for flight in active.values():
        flight.handle.cancel()
    if active:
        from benchmarks.engine_direct import _drain_cancelled

        _drain_cancelled(engine)
    return timings, time.perf_counter() - t0, most, steps


def engine_rate(engine: Any, rate: float, cfg: OpenLoopConfig, first_id: int) -> dict[str, Any]:
    """One rate on the loaded engine: a warm-up request, then the arrivals."""
    from benchmarks.engine_direct import _run_batch

    gen_cfg = engine.config(cfg.max_tokens)
    _run_batch(engine, 1, 1, gen_cfg, cfg.max_tokens, 600.0, first_id=first_id)
    arrivals = arrival_times(rate, cfg.duration_s, cfg.seed)
    timings, wall, most, steps = _engine_open(engine, arrivals, gen_cfg, cfg.duration_s + cfg.drain_s, first_id + 1)
    extra = {"max_in_flight": most, "steps": steps}
    return summarize_rate(rate, timings, cfg.duration_s, wall, cfg.slo, extra)


def run_engine(model: Path, cfg: OpenLoopConfig, scheduler: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load the engine as ovserve does and run every rate on it."""
    from benchmarks.engine_direct import Engine

    engine = Engine(model, scheduler=scheduler)
    rows = []
    for number, rate in enumerate(cfg.rates):
        row = {"target": "engine", **engine_rate(engine, rate, cfg, first_id=(number + 1) * 1_000_000)}
        print_row(row)
        rows.append(row)
    return {"load_s": round(engine.load_s, 2), "rows": rows}


# --------------------------------------------------------------------------- saturation


def saturation_from_results(out_dir: Path, max_tokens: int) -> dict[str, Any] | None:
    """The engine's tok/s at 64 streams from the newest ``results-*.json`` that has it, / ``max_tokens``."""
    for path in sorted(out_dir.glob("results-*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for target in data.get("targets", []):
            if target.get("name") != "engine":
                continue
            for level in target.get("levels", []):
                if level.get("concurrency") == SATURATION_STREAMS and not level.get("errors"):
                    tok_s = level["tokens_per_s"]
                    return {"rps": round(tok_s / max_tokens, 3), "engine_tokens_per_s": tok_s,
                            "run_max_tokens": data.get("config", {}).get("max_tokens"), "source": str(path)}
    return None


def measure_saturation(model: Path, max_tokens: int, log_dir: Path, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Run benchmarks.engine_direct at 64 streams in a child process; its tok/s / ``max_tokens``."""
    json_out = log_dir / "saturation-engine.json"
    argv = [sys.executable, "-m", "benchmarks.engine_direct", "--model", str(model), "--concurrency",
            str(SATURATION_STREAMS), "--requests-per-client", "2", "--max-tokens", str(max_tokens),
            "--json-out", str(json_out)]
    with (log_dir / "saturation-engine.log").open("wb") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=True)
    level = json.loads(json_out.read_text())["levels"][0]
    return {"rps": round(level["tokens_per_s"] / max_tokens, 3), "engine_tokens_per_s": level["tokens_per_s"],
            "source": f"measured now: benchmarks.engine_direct --concurrency {SATURATION_STREAMS}"}


# --------------------------------------------------------------------------- report


def print_row(row: dict[str, Any]) -> None:
    """One progress line per rate."""
    print(f"[openloop] {row['target']} {row['rate_rps']:g} req/s: sent {row['sent']}, completed {row['completed']}, "
          f"errors {row['errors']}, TTFT p50/p99 {row['ttft_p50_ms']}/{row['ttft_p99_ms']} ms, mean ITL p50 "
          f"{row['mean_itl_p50_ms']} ms, goodput {row['goodput_rps']} req/s ({row['slo_share']} within SLO)"
          + (f" ({row['first_error'][:100]})" if row["errors"] else ""), flush=True)


def table(rows: list[dict[str, Any]], saturation_rps: float | None) -> str:
    """The markdown table of every target and rate."""
    headers = ["target", "rate req/s", "rate / saturation", "arrived req/s", "sent", "completed", "errors",
               "TTFT p50 ms", "TTFT p99 ms", "mean ITL p50 ms", "goodput req/s", "within SLO", "tok/s",
               "max in flight", "engine queue p99 ms"]
    keys = ["arrived_rps", "sent", "completed", "errors", "ttft_p50_ms", "ttft_p99_ms", "mean_itl_p50_ms",
            "goodput_rps", "slo_share", "tokens_per_s", "max_in_flight", "engine_queue_p99_ms"]
    body = [[r["target"], r["rate_rps"], round(r["rate_rps"] / saturation_rps, 2) if saturation_rps else None,
             *(r.get(key) for key in keys)] for r in rows]
    return markdown(headers, body)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The child-process command line (the engine target)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.openloop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=["engine"])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--rates", type=parse_float_list, required=True)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drain", type=float, default=120.0)
    parser.add_argument("--slo-ttft-ms", type=float, default=1000.0)
    parser.add_argument("--slo-itl-ms", type=float, default=50.0)
    parser.add_argument("--scheduler", default="{}", metavar="JSON", help="EngineSettings scheduler fields")
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> OpenLoopConfig:
    """The OpenLoopConfig of parsed arguments (shared with benchmarks.workloads)."""
    return OpenLoopConfig(rates=tuple(args.rates), duration_s=args.duration, max_tokens=args.max_tokens,
                          seed=args.seed, drain_s=args.drain, slo=Slo(args.slo_ttft_ms / 1000, args.slo_itl_ms / 1000))


def main(argv: list[str] | None = None) -> int:
    """Run the open-loop rates on the engine in this process; write (or print) the JSON."""
    args = _parse_args(argv)
    cfg = config_from_args(args)
    result = run_engine(args.model, cfg, json.loads(args.scheduler))
    result["config"] = {**asdict(cfg), "slo": cfg.slo.describe()}
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
