"""Where process runs: plain calculators that block go to a thread pool, and max_in_flight caps a node."""

import asyncio
import time

import pytest

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.framework.errors import GraphConfigError
from ovserve.framework.registry import Registry
from ovserve.framework.runtime import Graph
from ovserve.framework.validation import graph_from_text

PAUSE = 0.3


class BlockingUpper(Calculator):
    """Blocks as CPU-bound or file-reading work would, and says so."""

    TEXT = Input(str)
    UPPER = Output(str)
    runs_in_thread = True

    def process(self, ctx: CalculatorContext) -> None:
        time.sleep(PAUSE)
        ctx.send(self.UPPER, ctx.value(self.TEXT).upper())
        ctx.send(self.UPPER, "done")


class Blocking(BlockingUpper):
    """The same work, on the event loop: what a thread keeps from happening."""

    runs_in_thread = False


class Counted(Calculator):
    """Async: records how many of its calls overlap."""

    TEXT = Input(str)
    UPPER = Output(str)
    running = 0
    most = 0

    async def process(self, ctx: CalculatorContext) -> None:
        Counted.running += 1
        Counted.most = max(Counted.most, Counted.running)
        await asyncio.sleep(0.05)
        Counted.running -= 1
        await ctx.send(self.UPPER, ctx.value(self.TEXT).upper())


def registry() -> Registry:
    registry = Registry()
    for target in (BlockingUpper, Blocking, Counted):
        registry.add(target, "tests")
    return registry


def graph_text(calculator: str, node_fields: str = "", graph_fields: str = "") -> str:
    return f"""
        input_stream: "TEXT:text"
        output_stream: "UPPER:upper"
        {graph_fields}
        node {{ calculator: "{calculator}" input_stream: "TEXT:text" output_stream: "UPPER:upper" {node_fields} }}
    """


async def one_run(graph: Graph, word: str) -> list[str]:
    async with graph.run() as run:
        await run.send("TEXT", word)
        run.close_inputs()
        return await run.collect("UPPER")


async def runs_and_loop_lag(text: str, count: int = 3) -> tuple[list[list[str]], float, float]:
    """(each run's output, the longest the event loop was late for a 10 ms tick meanwhile, wall time)."""
    graph = await Graph.start(graph_from_text(text, registry()))
    lag = 0.0
    done = False

    async def ticker() -> None:
        nonlocal lag
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, time.perf_counter() - before - 0.01)

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    outputs = await asyncio.gather(*(one_run(graph, f"w{i}") for i in range(count)))
    wall = time.perf_counter() - started
    done = True
    await ticking
    await graph.stop()
    return list(outputs), lag, wall


async def test_a_calculator_that_runs_in_a_thread_stalls_nothing_and_its_sends_arrive_in_order():
    outputs, lag, wall = await runs_and_loop_lag(graph_text("BlockingUpper"))
    assert outputs == [["W0", "done"], ["W1", "done"], ["W2", "done"]]
    assert lag < PAUSE / 2  # the loop kept ticking while three calls blocked their threads
    assert wall < 2.5 * PAUSE  # side by side, not one after the other


async def test_on_the_event_loop_the_same_calculator_stalls_every_run():
    _, lag, wall = await runs_and_loop_lag(graph_text("Blocking"))
    assert lag >= PAUSE * 0.9 and wall >= 3 * PAUSE * 0.9


async def test_a_node_s_declared_executor_runs_it_in_that_pool():
    executor = ('executor { name: "one" type: "ThreadPoolExecutor" '
                'options { [mediapipe.ThreadPoolExecutorOptions.ext] { num_threads: 1 } } }')
    outputs, lag, wall = await runs_and_loop_lag(graph_text("Blocking", 'executor: "one"', executor))
    assert [o[0] for o in outputs] == ["W0", "W1", "W2"]
    assert lag < PAUSE / 2 and wall >= 3 * PAUSE * 0.9  # off the loop, one thread: one call at a time


def test_an_undeclared_executor_is_named_in_the_error():
    with pytest.raises(GraphConfigError, match="executor 'nowhere' is not declared"):
        graph_from_text(graph_text("Blocking", 'executor: "nowhere"'), registry())


async def test_max_in_flight_caps_concurrent_calls_across_runs():
    Counted.most = 0
    outputs, _, _ = await runs_and_loop_lag(graph_text("Counted", "max_in_flight: 1"), count=4)
    assert sorted(o[0] for o in outputs) == ["W0", "W1", "W2", "W3"] and Counted.most == 1
    Counted.most = 0
    await runs_and_loop_lag(graph_text("Counted"), count=4)
    assert Counted.most == 4


async def test_a_cancelled_run_waits_for_its_thread_before_the_next_call_or_close():
    Counted.most = 0
    text = graph_text("BlockingUpper", "max_in_flight: 1")
    graph = await Graph.start(graph_from_text(text, registry()))
    cancelled = graph.run()
    await cancelled.send("TEXT", "first")
    await asyncio.sleep(PAUSE / 3)  # its process is now sleeping in a thread
    cancelled.cancel("the client went away")
    started = time.perf_counter()
    second = await one_run(graph, "second")
    assert second == ["SECOND", "done"]
    assert time.perf_counter() - started >= PAUSE * 1.5  # waited for the cancelled call's thread, then ran its own
    await cancelled.aclose()
    await graph.stop()
