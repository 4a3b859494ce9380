"""The soak's last phase: clients that disconnect while other streams run, then a check that the engine is idle.

Each round streams one long answer (``long_tokens`` tokens) while ``dropped`` other clients start streams and drop
them after ``after_chunks`` chunks, so that every abort reaches the engine while it is still stepping for
another request. After the last round, with nothing in flight, the engine processes must be idle: their CPU
time over ``idle_seconds``, ``ovserve_engine_steps_total`` and ``ovserve_engine_idle_steps_total`` must not
grow, and ``ovserve_engine_handles`` must be 0. The tree's memory is sampled before the phase, after it and
after the idle wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks import peers

PROMPT = [{"role": "user", "content": "Tell me a long story about a dragon and a knight."}]


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def engine_pids(server_pid: int) -> list[int]:
    return [pid for pid in peers.process_tree(server_pid) if peers.is_engine(pid)]


async def engine_counters(client: httpx.AsyncClient) -> dict[str, float]:
    """The engine's step counters and handle gauge, summed over models."""
    text = (await client.get("/metrics")).text
    counters: dict[str, float] = {}
    for name in ("ovserve_engine_steps_total", "ovserve_engine_idle_steps_total", "ovserve_engine_handles"):
        values = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
        counters[name] = sum(float(v) for v in values)
    return counters


async def stream(client: httpx.AsyncClient, model: str, max_tokens: int, drop_after: int | None) -> str:
    """Stream a chat; with ``drop_after``, drop the connection after that many chunks. Returns the outcome."""
    body = {"model": model, "messages": PROMPT, "stream": True, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 0.7}
    async with client.stream("POST", "/v3/chat/completions", json=body) as response:
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        chunks, done = 0, False
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                if "error" in json.loads(line[6:]):
                    return "error event"
                chunks += 1
                if drop_after is not None and chunks >= drop_after:
                    return "dropped"
            done = done or line == "data: [DONE]"
    return "completed" if done else "incomplete"


async def disconnects_under_load(base_url: str, server_pid: int, model: str = "chat", rounds: int = 10,
                                 dropped: int = 3, long_tokens: int = 300, after_chunks: int = 5,
                                 idle_seconds: float = 10) -> dict[str, Any]:
    """Run the phase; return what the clients saw and the idle check's figures."""
    outcomes: Counter[str] = Counter()
    before = peers.ovserve_memory(server_pid)
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        for _ in range(rounds):
            results = await asyncio.gather(stream(client, model, long_tokens, None),
                                           *(stream(client, model, 4000, after_chunks) for _ in range(dropped)))
            outcomes.update(results)
        after = peers.ovserve_memory(server_pid)
        await asyncio.sleep(1)  # the engine's last report comes just after its last step
        counters_before, cpu_before = await engine_counters(client), cpu_seconds(engine_pids(server_pid))
        await asyncio.sleep(idle_seconds)
        counters_after, cpu_after = await engine_counters(client), cpu_seconds(engine_pids(server_pid))
    idle_memory = peers.ovserve_memory(server_pid)
    return {
        "rounds": rounds, "dropped_per_round": dropped, "long_tokens": long_tokens, "after_chunks": after_chunks,
        "outcomes": dict(outcomes), "idle_seconds": idle_seconds,
        "engine_cpu_seconds_idle": round(cpu_after - cpu_before, 2),
        "steps_while_idle": (counters_after["ovserve_engine_steps_total"]
                             - counters_before["ovserve_engine_steps_total"]),
        "idle_steps_total": counters_after["ovserve_engine_idle_steps_total"],
        "handles_after": counters_after["ovserve_engine_handles"],
        "tree_rss_mib": {"before": before["tree_rss_mib"], "after": after["tree_rss_mib"],
                         "after_idle": idle_memory["tree_rss_mib"]},
    }


def idle(result: dict[str, Any]) -> bool:
    """Whether the engine was idle after the phase, as it must be."""
    return (result["steps_while_idle"] == 0 and result["handles_after"] == 0
            and result["engine_cpu_seconds_idle"] < 0.1 * result["idle_seconds"]
            and set(result["outcomes"]) <= {"completed", "dropped"})


def describe(result: dict[str, Any]) -> str:
    """The phase as a paragraph of the soak report."""
    memory = result["tree_rss_mib"]
    return (f"Disconnects under load: {result['rounds']} rounds of one {result['long_tokens']}-token stream while "
            f"{result['dropped_per_round']} others drop after {result['after_chunks']} chunks: {result['outcomes']}. "
            f"Then {result['idle_seconds']:g} s idle: engine CPU {result['engine_cpu_seconds_idle']} s, "
            f"steps {result['steps_while_idle']:g}, handles {result['handles_after']:g}, idle steps in the whole "
            f"run {result['idle_steps_total']:g}; tree memory {memory['before']} MiB before the phase, "
            f"{memory['after']} after it, {memory['after_idle']} after the idle wait. "
            f"{'Idle, as it must be.' if idle(result) else 'NOT IDLE.'}")
