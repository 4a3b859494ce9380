"""A lean asyncio load generator for any OpenAI-compatible chat completions endpoint.

``concurrency`` clients each run ``requests_per_client`` streaming requests back to back against
``POST {base_url}/chat/completions``. The client shares the machine with the server, so the hot
path is kept small: one aiohttp session, request bodies serialized before the clock starts, and
one ``json.loads`` per SSE ``data:`` line. The client's own CPU time is measured and reported.

Usage::

    python -m benchmarks.loadgen --base-url http://127.0.0.1:8000/v3 --concurrency 1,4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass

import aiohttp

from benchmarks.workload import (
    MODEL_NAME,
    LevelResult,
    RequestTiming,
    default_requests_per_client,
    messages_for,
    parse_int_list,
    summarize,
)

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


@dataclass(frozen=True)
class LoadConfig:
    """How to load one server.

    Attributes:
        base_url: the OpenAI base URL, e.g. ``http://127.0.0.1:8000/v3`` (no trailing slash).
        max_tokens: output tokens asked for per request.
        ignore_eos: send ``ignore_eos: true`` (llama-server and ovserve honour it).
        model: the ``model`` field of every request.
        request_timeout_s: bound on one request, headers to ``[DONE]``.
        read_timeout_s: bound on the silence between two reads of one stream.
        level_timeout_s: bound on one whole concurrency level.
        extra_body: server-specific fields merged into every request body (for llama-server,
            ``{"cache_prompt": False}`` so that repeated prompts are prefilled like new ones).
    """

    base_url: str
    max_tokens: int = 128
    ignore_eos: bool = True
    model: str = MODEL_NAME
    request_timeout_s: float = 900.0
    read_timeout_s: float = 300.0
    level_timeout_s: float = 1800.0
    extra_body: tuple[tuple[str, object], ...] = ()

    @property
    def url(self) -> str:
        """The chat completions URL."""
        return self.base_url.rstrip("/") + "/chat/completions"


def request_body(index: int, config: LoadConfig) -> bytes:
    """Serialize the streaming chat request number ``index``."""
    body: dict[str, object] = {
        "model": config.model,
        "messages": messages_for(index),
        "max_tokens": config.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if config.ignore_eos:
        body["ignore_eos"] = True
    body.update(config.extra_body)
    return json.dumps(body).encode()


class _StreamState:
    """Per-request accumulator fed with the decoded SSE events of one stream."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.ttft: float | None = None
        self.last: float = start
        self.chunks = 0
        self.gaps: list[float] = []
        self.usage_tokens: int | None = None
        self.prompt_tokens: int | None = None

    def feed(self, event: dict) -> None:
        """Record one decoded chunk: content deltas time-stamped, usage remembered."""
        usage = event.get("usage")
        if usage:
            self.usage_tokens = usage.get("completion_tokens", self.usage_tokens)
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
        choices = event.get("choices")
        if not choices:
            return
        content = (choices[0].get("delta") or {}).get("content")
        if not content:
            return
        self.keep(content)
        now = time.perf_counter()
        if self.ttft is None:
            self.ttft = now - self.start
        else:
            self.gaps.append(now - self.last)
        self.last = now
        self.chunks += 1

    def keep(self, content: str) -> None:
        """Called with each content delta; a subclass that needs the text keeps it."""

    def timing(self) -> RequestTiming:
        """Turn the stream into a RequestTiming (tokens from usage, else content chunks)."""
        tokens = self.usage_tokens if self.usage_tokens is not None else self.chunks
        per_chunk = tokens / self.chunks if self.chunks and tokens else 1.0
        return RequestTiming(
            ttft=self.ttft,
            latency=time.perf_counter() - self.start,
            output_tokens=tokens,
            content_chunks=self.chunks,
            itl=[gap / per_chunk for gap in self.gaps],
        )


def _error(message: str, start: float) -> RequestTiming:
    """A failed request's timing."""
    return RequestTiming(ok=False, error=message[:500], latency=time.perf_counter() - start)


async def run_request(session: aiohttp.ClientSession, body: bytes, config: LoadConfig) -> RequestTiming:
    """Send one streaming request and time its content deltas. Never raises for request errors."""
    start = time.perf_counter()
    max_lines = 20 * config.max_tokens + 1000
    try:
        async with session.post(config.url, data=body, headers=_JSON_HEADERS) as resp:
            if resp.status != 200:
                text = await resp.text()
                return _error(f"HTTP {resp.status}: {text[:300]}", start)
            state = _StreamState(start)
            lines = 0
            async for raw in resp.content:
                lines += 1
                if lines > max_lines:
                    return _error(f"stream longer than {max_lines} lines", start)
                if not raw.startswith(b"data:"):
                    continue
                data = raw[5:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    return _error(f"error event: {json.dumps(event['error'])[:300]}", start)
                state.feed(event)
            if state.chunks == 0:
                return _error("stream ended without any content", start)
            return state.timing()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        return _error(f"{type(exc).__name__}: {exc}", start)


async def _client(
    session: aiohttp.ClientSession,
    client_id: int,
    concurrency: int,
    bodies: list[bytes],
    config: LoadConfig,
    out: list[RequestTiming | None],
) -> None:
    """One client: its requests back to back; request of round k is number k*concurrency+id."""
    for index in range(client_id, len(bodies), concurrency):
        out[index] = await run_request(session, bodies[index], config)


def _new_session(concurrency: int, config: LoadConfig) -> aiohttp.ClientSession:
    """A session opening one fresh loopback connection per request, with the configured timeouts.

    Connections are not reused: llama-server closes the connection after every streamed response,
    and a reused dead connection fails the next request. A loopback connect costs well under a
    millisecond, and every target gets the same treatment.
    """
    timeout = aiohttp.ClientTimeout(total=config.request_timeout_s, sock_read=config.read_timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency + 1, force_close=True)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def run_level(concurrency: int, requests_per_client: int, config: LoadConfig) -> LevelResult:
    """Run one warm-up request, then one measured concurrency level."""
    total = concurrency * requests_per_client
    bodies = [request_body(i, config) for i in range(total)]
    async with _new_session(concurrency, config) as session:
        warmup = await run_request(session, bodies[0], config)
        out: list[RequestTiming | None] = [None] * total
        cpu0, t0 = time.process_time(), time.perf_counter()
        tasks = [
            asyncio.ensure_future(_client(session, cid, concurrency, bodies, config, out)) for cid in range(concurrency)
        ]
        _done, pending = await asyncio.wait(tasks, timeout=config.level_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    timings = [t or RequestTiming(ok=False, error="level timeout: request not finished") for t in out]
    extra = {"warmup_ok": warmup.ok, "warmup_error": warmup.error, "requests_per_client": requests_per_client}
    return summarize(concurrency, timings, wall, cpu, extra)


def run_levels(levels: list[int], config: LoadConfig, requests_per_client: int | None = None) -> list[LevelResult]:
    """Run several concurrency levels one after the other (blocking)."""
    results = []
    for concurrency in levels:
        rpc = requests_per_client or default_requests_per_client(concurrency)
        results.append(asyncio.run(run_level(concurrency, rpc, config)))
    return results


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments of the standalone load generator."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="OpenAI base URL, e.g. http://127.0.0.1:8000/v3")
    parser.add_argument("--concurrency", type=parse_int_list, default=[1, 4], help="e.g. 1,4,16,64")
    parser.add_argument("--requests-per-client", type=int, default=None, help="default: 4 (<=4), else 2")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the load generator against one server and print the results as JSON lines."""
    args = _parse_args(argv)
    config = LoadConfig(
        base_url=args.base_url,
        max_tokens=args.max_tokens,
        ignore_eos=not args.no_ignore_eos,
        model=args.model,
    )
    for result in run_levels(args.concurrency, config, args.requests_per_client):
        print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
