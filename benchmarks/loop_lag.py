"""How late the HTTP event loop runs while 16 streams of long prompts (about 2,000 tokens each) are served.

Every request's prompt differs from the first words on (so that no prefix is shared), and the server's
own ``ovserve_event_loop_lag_seconds`` histogram (a 5 ms timer's lateness) is read before and after the
level; its p50 and p99 over the level are reported, with tokens per second and first-token times. The
chat template, tokenization and token counting of those prompts are what would stall the loop.

Usage::

    ovserve serve --port 8000 &
    python -m benchmarks.loop_lag --base-url http://127.0.0.1:8000 --streams 16 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from benchmarks.loadgen import LoadConfig, _new_session, run_request
from benchmarks.server_metrics import histogram, quantile
from benchmarks.workload import MODEL_NAME, PROMPTS, summarize

#: About 2,000 tokens of the default model's tokenizer.
LONG_CONTEXT_REPEATS = 16


def long_prompt(index: int) -> str:
    text = (" ".join(PROMPTS[(index + k) % len(PROMPTS)] for k in range(len(PROMPTS))) + " ") * LONG_CONTEXT_REPEATS
    return f"Request {index}: {text}\n\nSummarize the text above in one sentence."


def body(index: int, max_tokens: int) -> bytes:
    return json.dumps({"model": MODEL_NAME, "messages": [{"role": "user", "content": long_prompt(index)}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True}}).encode()


async def level(base_url: str, streams: int, rounds: int, max_tokens: int) -> dict:
    config = LoadConfig(base_url=f"{base_url}/v3", max_tokens=max_tokens)
    metrics = f"{base_url}/metrics"
    before = histogram(metrics, "ovserve_event_loop_lag_seconds")
    async with _new_session(streams, config) as session:
        started = time.perf_counter()
        timings = await asyncio.gather(*(run_request(session, body(s * rounds + r, max_tokens), config)
                                         for s in range(streams) for r in range(rounds)))
        wall = time.perf_counter() - started
    after = histogram(metrics, "ovserve_event_loop_lag_seconds")
    result = summarize(streams, list(timings), wall, None, {}).to_dict()
    result["loop_lag_p50_ms"] = 1000 * (quantile(before, after, 0.5) or 0.0)
    result["loop_lag_p99_ms"] = 1000 * (quantile(before, after, 0.99) or 0.0)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the server, without /v3")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="requests per stream, all started at once")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    result = asyncio.run(level(args.base_url.rstrip("/"), args.streams, args.rounds, args.max_tokens))
    keys = ("concurrency", "completed", "errors", "first_error", "tokens_per_s", "ttft_p50_ms", "ttft_p99_ms",
            "loop_lag_p50_ms", "loop_lag_p99_ms")
    print(json.dumps({key: result[key] for key in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
