"""Graph runtime benchmark: packets/s through a 5-node pass-through chain, and the cost of one run.

    python -m benchmarks.framework [--packets 200000] [--loops asyncio,uvloop]

Reports, side by side in one process: a bare asyncio-queue chain of 5 tasks (the floor any asyncio
design pays), the framework with one run, the framework with 64 concurrent runs (aggregate), and the
time to set up a run (construct it) and to complete one (one packet in, one out, all tasks done).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ovserve.framework import Graph, build_registry, graph_from_text

CHAIN = """
input_stream: "in"
output_stream: "out"
node { calculator: "PassThroughCalculator" input_stream: "in" output_stream: "s1" }
node { calculator: "PassThroughCalculator" input_stream: "s1" output_stream: "s2" }
node { calculator: "PassThroughCalculator" input_stream: "s2" output_stream: "s3" }
node { calculator: "PassThroughCalculator" input_stream: "s3" output_stream: "s4" }
node { calculator: "PassThroughCalculator" input_stream: "s4" output_stream: "out" }
"""
NODES = 5
QUEUE_SIZE = 64


async def bare_queue_chain(packets: int) -> float:
    """packets/s through 5 tasks joined by bounded asyncio.Queues (no framework)."""
    queues = [asyncio.Queue(QUEUE_SIZE) for _ in range(NODES + 1)]
    done = object()

    async def stage(source: asyncio.Queue, sink: asyncio.Queue) -> None:
        while (item := await source.get()) is not done:
            await sink.put(item)
        await sink.put(done)

    tasks = [asyncio.ensure_future(stage(queues[i], queues[i + 1])) for i in range(NODES)]
    start = time.perf_counter()

    async def feed() -> None:
        for i in range(packets):
            await queues[0].put(i)
        await queues[0].put(done)

    feeder = asyncio.ensure_future(feed())
    received = 0
    while await queues[-1].get() is not done:
        received += 1
    elapsed = time.perf_counter() - start
    await asyncio.gather(feeder, *tasks)
    assert received == packets
    return packets / elapsed


async def _one_run(graph: Graph, packets: int) -> None:
    async with graph.run() as run:
        async def feed() -> None:
            for i in range(packets):
                await run.send("in", i)
            run.close_inputs()

        feeder = asyncio.ensure_future(feed())
        expected = 0
        async for packet in run.outputs("out"):
            assert packet.value == expected
            expected += 1
        await feeder
        assert expected == packets


async def framework_chain(graph: Graph, packets: int, runs: int) -> float:
    """Aggregate packets/s with ``runs`` concurrent runs sharing ``packets`` between them."""
    per_run = packets // runs
    start = time.perf_counter()
    await asyncio.gather(*(_one_run(graph, per_run) for _ in range(runs)))
    return per_run * runs / (time.perf_counter() - start)


async def run_setup_cost(graph: Graph, repeats: int) -> tuple[float, float]:
    """(µs to construct a run, µs for a whole run with one packet through the chain)."""
    construct = 0.0
    start = time.perf_counter()
    for i in range(repeats):
        t0 = time.perf_counter()
        run = graph.run()
        construct += time.perf_counter() - t0
        run.send("in", i)
        run.close_inputs()
        packet = await run.get("out")
        assert packet is not None and packet.value == i
        await run.wait()
    whole = time.perf_counter() - start
    return construct / repeats * 1e6, whole / repeats * 1e6


async def measure(packets: int) -> dict[str, float]:
    graph = await Graph.start(graph_from_text(CHAIN, build_registry(entry_points=False)))
    gc.collect()
    await framework_chain(graph, packets // 10, 1)  # warm-up
    results = {
        "bare_asyncio_queue_chain_pps": await bare_queue_chain(packets),
        "framework_1_run_pps": await framework_chain(graph, packets, 1),
        "framework_64_runs_pps": await framework_chain(graph, packets, 64),
    }
    results["run_setup_us"], results["run_complete_one_packet_us"] = await run_setup_cost(graph, 5000)
    results["framework_vs_bare_1_run"] = results["framework_1_run_pps"] / results["bare_asyncio_queue_chain_pps"]
    await graph.stop()
    return results


def _runner(loop: str) -> Callable[[Coroutine[Any, Any, dict[str, float]]], dict[str, float]]:
    if loop == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--loops", default="asyncio,uvloop", help="event loops to measure, comma separated")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    table: dict[str, dict[str, float]] = {}
    for loop in args.loops.split(","):
        table[loop] = _runner(loop)(measure(args.packets))
    rows = [
        ("bare asyncio.Queue chain, packets/s", "bare_asyncio_queue_chain_pps", "{:,.0f}"),
        ("framework, 1 run, packets/s", "framework_1_run_pps", "{:,.0f}"),
        ("framework, 64 concurrent runs, packets/s", "framework_64_runs_pps", "{:,.0f}"),
        ("framework / bare (1 run)", "framework_vs_bare_1_run", "{:.2f}"),
        ("set up one run, µs", "run_setup_us", "{:.1f}"),
        ("whole run with one packet, µs", "run_complete_one_packet_us", "{:.1f}"),
    ]
    loops = list(table)
    print(f"| 5-node pass-through chain | {' | '.join(loops)} |")
    print(f"|---|{'---|' * len(loops)}")
    for label, key, fmt in rows:
        print(f"| {label} | {' | '.join(fmt.format(table[loop][key]) for loop in loops)} |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(table, out, indent=2)


if __name__ == "__main__":
    main()
