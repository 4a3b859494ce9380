"""What prefix caching costs when nothing can be reused: short distinct prompts, prefix caching on and off.

16 streams (by default), each running 2 requests back to back, 128 output tokens (``ignore_eos``),
every prompt different from its first word on (``i. <one of the workload's prompts>``), so the cache
has nothing to reuse but the chat template's default system text, the same ~24 tokens in every
prompt. Per server: tok/s, TTFT and inter-token latency, and the resident memory of its engine
process (the ``ovserve.engine.worker`` child of ``ovserve serve``, from ``/proc``): idle after start,
after the run, and its peak (``VmHWM``), plus the whole process tree's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks import peers
from benchmarks.loadgen import LoadConfig
from benchmarks.stream_client import Prepared, chat_body, run_closed
from benchmarks.tables import markdown
from benchmarks.workload import PROMPTS, summarize


@dataclass(frozen=True)
class PrefixCostConfig:
    """Streams, requests per stream and output tokens."""

    concurrency: int = 16
    requests_per_client: int = 2
    max_tokens: int = 128


def distinct_requests(count: int, config: LoadConfig, max_tokens: int) -> list[Prepared]:
    """``count`` short prompts that differ from their first word on."""
    return [chat_body([{"role": "user", "content": f"{i}. {PROMPTS[i % len(PROMPTS)]}"}],
                      max_tokens, config) for i in range(count)]


# --------------------------------------------------------------------------- the run


async def run(base_url: str, cfg: PrefixCostConfig, server_pid: int | None) -> dict[str, Any]:
    """One server: memory when idle, a warm-up, the level, memory after it."""
    load = LoadConfig(base_url=base_url, max_tokens=cfg.max_tokens)
    idle = peers.ovserve_memory(server_pid) if server_pid else {}
    count = cfg.concurrency * cfg.requests_per_client
    await run_closed([chat_body([{"role": "user", "content": "Hello!"}], 8, load)], 1, load)
    results, wall = await run_closed(distinct_requests(count, load, cfg.max_tokens), cfg.concurrency, load)
    level = summarize(cfg.concurrency, [r.timing for r in results], wall, None).to_dict()
    after = peers.ovserve_memory(server_pid) if server_pid else {}
    level["memory_idle"] = idle
    level["memory_after"] = after
    return level


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One line per server (and round)."""
    headers = ["server", "streams", "requests", "errors", "tok/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms",
               "engine RSS idle MiB", "engine RSS after MiB", "engine peak RSS MiB", "server tree RSS after MiB"]
    body = [[label, r["concurrency"], r["requests"], r["errors"], r["tokens_per_s"], r["ttft_p50_ms"],
             r["ttft_p99_ms"], r["itl_p50_ms"], r["memory_idle"].get("engine_rss_mib"),
             r["memory_after"].get("engine_rss_mib"), r["memory_after"].get("engine_peak_rss_mib"),
             r["memory_after"].get("tree_rss_mib")] for label, r in rows]
    return markdown(headers, body)
