"""What keeping responses costs the streams beside it: event-loop lag and inter-token latency of 8 streams while
another client stores 1,000 Responses API answers, side by side with the same run where it stores nothing.

The store starts with ``--prefill`` responses already in it (10,000: where a write on the event loop and its
prune measured 20 ms at the median and 268 ms at most), written straight into the SQLite file before the server
starts. One server serves both phases, one after the other: ``store: false`` (the writer's requests are answered,
nothing is kept), then ``store: true``, then ``store: false`` again, so that the noise of the machine shows. Each
phase: 8 streams of 256 tokens, back to back, while the writer sends its requests (``max_output_tokens`` 1, one
at a time); the streams' inter-token gaps (client side) and the server's own event-loop lag histogram are read
over the phase.

Usage::

    python -m benchmarks.store_load [--responses 1000] [--prefill 10000] [--streams 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import peers
from benchmarks.loadgen import LoadConfig, _new_session, run_request
from benchmarks.server_metrics import histogram, quantile
from benchmarks.tables import markdown
from benchmarks.workload import MODEL_NAME, MODEL_PATH, percentile
from ovserve.server.completion_store import CompletionStore


def prefill(path: Path, count: int) -> None:
    """``count`` stored responses, as the server keeps them, in a new store file."""
    store = CompletionStore(path, max_items=count + 10_000)
    output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "word " * 40}]}]
    for n in range(count):
        store.put_response("", {"id": f"resp_prefill{n}", "object": "response", "created_at": int(time.time()),
                                "output": output}, [{"role": "user", "content": f"question {n} " * 10}], None)
    store.close()


async def writer(base_url: str, count: int, store: bool) -> float:
    """Send ``count`` Responses requests one at a time; return how long they took."""
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        for n in range(count):
            response = await client.post("/v3/responses", json={
                "model": MODEL_NAME, "input": f"Say a word about number {n}.", "max_output_tokens": 1, "store": store})
            response.raise_for_status()
    return time.perf_counter() - started


async def phase(base_url: str, streams: int, responses: int, store: bool) -> dict[str, Any]:
    config = LoadConfig(base_url=f"{base_url}/v3", max_tokens=256)
    body = json.dumps({"model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me a long story."}],
                       "max_tokens": 256, "temperature": 0, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True}}).encode()
    before = histogram(f"{base_url}/metrics", "ovserve_event_loop_lag_seconds")
    done = asyncio.Event()
    gaps: list[float] = []

    async def stream_loop(session: Any) -> None:
        while not done.is_set():
            timing = await run_request(session, body, config)
            gaps.extend(timing.itl)

    async with _new_session(streams, config) as session:
        loops = [asyncio.ensure_future(stream_loop(session)) for _ in range(streams)]
        await asyncio.sleep(2)  # the streams are running
        seconds = await writer(base_url, responses, store)
        done.set()
        await asyncio.gather(*loops)
    after = histogram(f"{base_url}/metrics", "ovserve_event_loop_lag_seconds")
    return {"store": store, "writer_seconds": round(seconds, 1),
            "itl_p50_ms": round(1000 * (percentile(gaps, 50) or 0), 1),
            "itl_p99_ms": round(1000 * (percentile(gaps, 99) or 0), 1),
            "lag_p50_ms": round(1000 * (quantile(before, after, 0.5) or 0), 2),
            "lag_p99_ms": round(1000 * (quantile(before, after, 0.99) or 0), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=1000)
    parser.add_argument("--prefill", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--ovserve-bin", default="ovserve")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store_path = Path(folder) / "store.sqlite3"
        prefill(store_path, args.prefill)
        spec = peers.ovserve_spec(peers.resolve_ovserve(args.ovserve_bin), MODEL_PATH, Path(folder), "ovserve-store",
                                  ("--store-path", str(store_path), "--embedding-model", "none"))
        base_url = spec.base_url.removesuffix("/v3")
        with peers.running(spec):
            rows = [asyncio.run(phase(base_url, args.streams, args.responses, store)) for store in (False, True, False)]
    print(markdown(list(rows[0]), [list(row.values()) for row in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
