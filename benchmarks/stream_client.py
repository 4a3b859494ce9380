"""Streaming chat requests that keep what the new workloads need beyond loadgen's timings.

:func:`chat_stream` is :func:`benchmarks.loadgen.run_request` plus the answer's text (multi-turn
sessions append it to the conversation) and the prompt tokens from the final usage chunk, with
the clock optionally started at a given moment (an open-loop arrival time, so that a request the
client sent late is not measured from when it went out). Two drivers run lists of prepared
requests: :func:`run_closed` (N clients back to back) and :func:`run_open` (each request sent at
its arrival time, however many are still in flight).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.loadgen import LoadConfig, _StreamState
from benchmarks.workload import RequestTiming, percentile

_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


@dataclass(frozen=True)
class Prepared:
    """One serialized chat request and the output tokens it asks for."""

    body: bytes
    max_tokens: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatResult:
    """What one streamed request measured, with its answer and its prompt's length."""

    timing: RequestTiming
    text: str = ""
    prompt_tokens: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


def chat_body(messages: list[dict[str, str]], max_tokens: int, config: LoadConfig,
              info: dict[str, Any] | None = None) -> Prepared:
    """A greedy streaming chat request with usage (``ignore_eos`` as configured)."""
    body: dict[str, object] = {
        "model": config.model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if config.ignore_eos:
        body["ignore_eos"] = True
    body.update(config.extra_body)
    return Prepared(json.dumps(body).encode(), max_tokens, info or {})


class _TextState(_StreamState):
    """loadgen's per-stream accumulator, also keeping the text and the prompt tokens."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.parts: list[str] = []

    def keep(self, content: str) -> None:
        self.parts.append(content)


def _failed(message: str, start: float, info: dict[str, Any]) -> ChatResult:
    """A failed request's result."""
    timing = RequestTiming(ok=False, error=message[:500], latency=time.perf_counter() - start)
    return ChatResult(timing, info=info)


async def _read_stream(resp: aiohttp.ClientResponse, state: _TextState, max_lines: int) -> str | None:
    """Feed the SSE events of one response into ``state``; return an error message or None."""
    lines = 0
    async for raw in resp.content:
        lines += 1
        if lines > max_lines:
            return f"stream longer than {max_lines} lines"
        if not raw.startswith(b"data:"):
            continue
        data = raw[5:].strip()
        if data == b"[DONE]":
            return None
        event = json.loads(data)
        if "error" in event:
            return f"error event: {json.dumps(event['error'])[:300]}"
        state.feed(event)
    return None


async def chat_stream(session: aiohttp.ClientSession, request: Prepared, config: LoadConfig,
                      start: float | None = None) -> ChatResult:
    """Send one streaming request; times count from ``start`` (default: now). Never raises for request errors."""
    start = time.perf_counter() if start is None else start
    try:
        async with session.post(config.url, data=request.body, headers=_HEADERS) as resp:
            if resp.status != 200:
                return _failed(f"HTTP {resp.status}: {(await resp.text())[:300]}", start, request.info)
            state = _TextState(start)
            error = await _read_stream(resp, state, 20 * request.max_tokens + 1000)
            if error:
                return _failed(error, start, request.info)
            if state.chunks == 0:
                return _failed("stream ended without any content", start, request.info)
            return ChatResult(state.timing(), "".join(state.parts), state.prompt_tokens, request.info)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        return _failed(f"{type(exc).__name__}: {exc}", start, request.info)


def new_session(config: LoadConfig, limit: int = 0) -> aiohttp.ClientSession:
    """A session with one fresh loopback connection per request (as loadgen's); ``limit`` 0 = no cap."""
    timeout = aiohttp.ClientTimeout(total=config.request_timeout_s, sock_read=config.read_timeout_s)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, force_close=True), timeout=timeout)


def _not_finished(request: Prepared, why: str) -> ChatResult:
    """The result of a request cut off by a deadline."""
    return ChatResult(RequestTiming(ok=False, error=why), info=request.info)


async def run_closed(requests: list[Prepared], concurrency: int, config: LoadConfig) -> tuple[list[ChatResult], float]:
    """``concurrency`` clients; client ``j`` runs requests ``j, j + concurrency, ...`` back to back.

    Returns the results in request order and the wall time (bounded by ``config.level_timeout_s``).
    """
    out: list[ChatResult | None] = [None] * len(requests)

    async def client(first: int) -> None:
        for index in range(first, len(requests), concurrency):
            out[index] = await chat_stream(session, requests[index], config)

    async with new_session(config, concurrency + 1) as session:
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(client(j)) for j in range(concurrency)]
        _done, pending = await asyncio.wait(tasks, timeout=config.level_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - started
    return [r or _not_finished(requests[i], "level timeout") for i, r in enumerate(out)], wall


@dataclass
class OpenRun:
    """What an open-loop run measured besides the per-request results."""

    results: list[ChatResult]
    window_s: float
    wall_s: float
    max_in_flight: int
    send_lag_p99_ms: float | None


async def run_open(requests: list[Prepared], arrivals: list[float], config: LoadConfig,
                   drain_s: float) -> OpenRun:
    """Send request ``i`` at ``arrivals[i]`` seconds from now, whatever is still in flight.

    Each request's times count from its arrival time. After the last arrival, requests still in
    flight get ``drain_s`` seconds to finish; those that do not are cancelled and counted as errors.
    """
    out: list[ChatResult | None] = [None] * len(requests)
    lags: list[float] = []
    state = {"in_flight": 0, "max": 0}

    async def one(index: int, due: float) -> None:
        lags.append(time.perf_counter() - due)
        state["in_flight"] += 1
        state["max"] = max(state["max"], state["in_flight"])
        try:
            out[index] = await chat_stream(session, requests[index], config, start=due)
        finally:
            state["in_flight"] -= 1

    async with new_session(config) as session:
        t0 = time.perf_counter()
        tasks = []
        for index, at in enumerate(arrivals):
            await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
            tasks.append(asyncio.ensure_future(one(index, t0 + at)))
        window = time.perf_counter() - t0
        _done, pending = await asyncio.wait(tasks, timeout=drain_s) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - t0
    results = [r or _not_finished(requests[i], f"not finished {drain_s:.0f}s after the last arrival")
               for i, r in enumerate(out)]
    lag_p99 = percentile(lags, 99)
    return OpenRun(results, window, wall, state["max"], None if lag_p99 is None else round(lag_p99 * 1000, 2))
