"""Graph runs: streaming, synchronisation, backpressure, errors, cancellation, shared resources."""

import asyncio

import pytest

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.framework.errors import CalculatorError, RunCancelledError
from ovserve.framework.registry import Registry
from ovserve.framework.runtime import Graph, ResourceError
from ovserve.framework.validation import graph_from_text
from tests.framework.sample_calculators import Greeting, GreetingModel, sample_registry


async def start(text: str, registry: Registry | None = None, **side_packets) -> Graph:
    return await Graph.start(graph_from_text(text, registry or sample_registry()), side_packets)


CHAIN = """
input_stream: "TEXT:text"
output_stream: "COPIES:copies"
node { name: "upper" calculator: "Upper" input_stream: "TEXT:text" output_stream: "UPPER:upper" }
node { name: "repeat" calculator: "Repeat" input_stream: "TEXT:upper" output_stream: "COPIES:copies"
       node_options { [type.googleapis.com/test.RepeatOptions] { count: 2 } } }
"""


async def test_packets_flow_in_order_and_a_calculator_streams_several_per_input():
    graph = await start(CHAIN)
    async with graph.run() as run:
        for word in ("a", "b"):
            await run.send("TEXT", word)
        run.close_inputs()
        packets = [packet async for packet in run.outputs("COPIES")]
        await run.wait()
    assert [p.value for p in packets] == ["A", "A", "B", "B"]
    assert [p.timestamp for p in packets] == [0, 1, 2, 3]


async def test_inputs_with_several_streams_are_synchronised_by_timestamp():
    graph = await start("""
        input_stream: "LEFT:l"
        input_stream: "RIGHT:r"
        output_stream: "PAIR:p"
        node { calculator: "Pair" input_stream: "LEFT:l" input_stream: "RIGHT:r" output_stream: "PAIR:p" }
    """)
    async with graph.run() as run:
        await run.send("RIGHT", "r1", timestamp=1)
        for ts, value in enumerate(["l0", "l1", "l2"]):
            await run.send("LEFT", value, timestamp=ts)
        run.close_input("RIGHT")
        run.close_input("LEFT")
        assert await run.collect("PAIR") == [("l0", None), ("l1", "r1"), ("l2", None)]


async def test_a_pair_waits_for_the_slower_input_of_its_timestamp():
    graph = await start("""
        input_stream: "LEFT:l"
        input_stream: "RIGHT:r"
        output_stream: "PAIR:p"
        node { calculator: "Pair" input_stream: "LEFT:l" input_stream: "RIGHT:r" output_stream: "PAIR:p" }
    """)
    async with graph.run() as run:
        await run.send("LEFT", "l0")
        reader = asyncio.ensure_future(run.get("PAIR"))
        await asyncio.sleep(0.01)
        assert not reader.done(), "must wait: RIGHT may still send a packet at timestamp 0"
        await run.send("RIGHT", "r0")
        assert (await reader).value == ("l0", "r0")


class Blocker(Calculator):
    """Waits forever in process; records its lifecycle."""

    TEXT = Input(str)
    OUT = Output(str)
    events: list[str] = []

    def open(self, ctx: CalculatorContext) -> None:
        self.events.append("open")

    async def process(self, ctx: CalculatorContext) -> None:
        self.events.append("process")
        await asyncio.Event().wait()

    async def close(self, ctx: CalculatorContext) -> None:
        await asyncio.sleep(0)
        self.events.append("close")


async def test_cancelling_a_run_stops_everything_promptly_and_close_runs():
    registry = sample_registry()
    registry.add(Blocker, "test")
    Blocker.events = []
    graph = await start("""
        input_stream: "TEXT:t"
        output_stream: "OUT:o"
        node { name: "upper" calculator: "Upper" input_stream: "TEXT:t" output_stream: "UPPER:u" }
        node { name: "blocker" calculator: "Blocker" input_stream: "TEXT:u" output_stream: "OUT:o" }
    """, registry)
    before = asyncio.all_tasks()
    run = graph.run()
    await run.send("TEXT", "x")
    reader = asyncio.ensure_future(run.get("OUT"))
    while "process" not in Blocker.events:
        await asyncio.sleep(0.001)
    run.cancel("client went away")
    await asyncio.wait_for(run.aclose(), timeout=1)
    assert Blocker.events == ["open", "process", "close"]
    with pytest.raises(RunCancelledError, match="client went away"):
        await reader
    assert asyncio.all_tasks() - before == set(), "no task of the run is left behind"


class Failing(Calculator):
    """Raises on the second packet."""

    TEXT = Input(str)
    OUT = Output(str)
    closed = 0

    def process(self, ctx: CalculatorContext) -> None:
        if ctx.timestamp == 1:
            raise ValueError("bad packet")
        ctx.send(self.OUT, ctx.value(self.TEXT))

    def close(self, ctx: CalculatorContext) -> None:
        type(self).closed += 1


async def test_a_calculator_exception_reaches_the_caller_with_the_node_name():
    registry = sample_registry()
    registry.add(Failing, "test")
    Failing.closed = 0
    graph = await start("""
        input_stream: "TEXT:t"
        output_stream: "OUT:o"
        node { name: "checker" calculator: "Failing" input_stream: "TEXT:t" output_stream: "OUT:o" }
    """, registry)
    async with graph.run() as run:
        for word in ("a", "b", "c"):
            await run.send("TEXT", word)
        assert (await run.get("OUT")).value == "a", "what was produced before the failure still arrives"
        with pytest.raises(CalculatorError) as caught:
            await run.get("OUT")
        with pytest.raises(CalculatorError):
            await run.wait()
    error = caught.value
    assert error.node == "checker" and error.calculator == "Failing"
    assert isinstance(error.cause, ValueError)
    assert "node 'checker' (Failing) failed: ValueError: bad packet" in str(error)
    assert Failing.closed == 1


class OpenFails(Calculator):
    TEXT = Input(str)
    closed = 0

    def open(self, ctx: CalculatorContext) -> None:
        raise RuntimeError("cannot open")

    def close(self, ctx: CalculatorContext) -> None:
        type(self).closed += 1


async def test_close_is_not_called_when_open_failed():
    registry = sample_registry()
    registry.add(OpenFails, "test")
    graph = await start('input_stream: "TEXT:t"\nnode { name: "n" calculator: "OpenFails" input_stream: "TEXT:t" }',
                        registry)
    async with graph.run() as run:
        with pytest.raises(CalculatorError, match=r"node 'n'.*cannot open"):
            await run.wait()
    assert OpenFails.closed == 0


class Flood(Calculator):
    """Sends COUNT numbers from one process call and reports how many it has sent."""

    START = Input(int)
    NUMBER = Output(int)
    PROGRESS = SideInput(list)

    async def process(self, ctx: CalculatorContext) -> None:
        progress = ctx.side["PROGRESS"]
        for i in range(ctx.value(self.START)):
            progress[0] = i + 1
            await ctx.send(self.NUMBER, i)


async def test_a_slow_reader_bounds_every_queue_upstream():
    registry = sample_registry()
    registry.add(Flood, "test")
    spec = graph_from_text("""
        input_stream: "START:start"
        output_stream: "DOUBLED:out"
        input_side_packet: "PROGRESS:progress"
        max_queue_size: 8
        node { calculator: "Flood" input_stream: "START:start" output_stream: "NUMBER:n"
               input_side_packet: "PROGRESS:progress" }
        node { calculator: "Double" input_stream: "NUMBER:n" output_stream: "DOUBLED:out" }
    """, registry)
    progress = [0]
    graph = await Graph.start(spec, {"PROGRESS": progress})
    async with graph.run() as run:
        await run.send("START", 10_000)
        run.close_inputs()
        read = 0
        largest_gap = 0
        while read < 200:
            packet = await run.get("DOUBLED")
            assert packet.value == 2 * read
            read += 1
            await asyncio.sleep(0)  # a slow consumer: one packet per loop turn
            largest_gap = max(largest_gap, progress[0] - read)
        # Two queues of 8 between the producer and the reader, plus one packet in flight per node.
        assert largest_gap <= 2 * 8 + 2, f"the producer ran {largest_gap} packets ahead of the reader"
        assert progress[0] < 10_000


async def test_a_hundred_concurrent_runs_share_one_resource_without_mixing_packets():
    GreetingModel.opened = 0
    graph = await start("""
        input_stream: "NAME:name"
        output_stream: "GREETING:greeting"
        node { name: "model" calculator: "GreetingModel" output_side_packet: "MODEL:model"
               node_options { [type.googleapis.com/test.GreetingOptions] { word: "hi" } } }
        node { name: "greet" calculator: "Greet" input_stream: "NAME:name" input_side_packet: "MODEL:model"
               output_stream: "GREETING:greeting" }
    """)
    model: Greeting = graph.side_packets["model"]

    async def one_request(i: int) -> list[str]:
        async with graph.run() as run:
            for j in range(20):
                await run.send("NAME", f"run{i}-{j}")
                await asyncio.sleep(0)
            run.close_inputs()
            return await run.collect("GREETING")

    results = await asyncio.gather(*(one_request(i) for i in range(100)))
    for i, greetings in enumerate(results):
        assert greetings == [f"hi run{i}-{j}" for j in range(20)]
    assert GreetingModel.opened == 1, "the resource is built once per graph load"
    assert model.calls == 100 * 20
    await graph.stop()
    assert GreetingModel.closed >= 1


async def test_a_resource_that_fails_to_open_names_its_node():
    class Broken(GreetingModel):
        def open(self, ctx):
            raise OSError("model file missing")

    registry = sample_registry()
    registry.add(Broken, "test")
    with pytest.raises(ResourceError, match="resource node 'model' \\(Broken\\) failed to open: OSError: model file"):
        await start('node { name: "model" calculator: "Broken" output_side_packet: "MODEL:m" }', registry)


async def test_explicit_timestamps_must_increase():
    graph = await start(CHAIN)
    async with graph.run() as run:
        await run.send("TEXT", "a", timestamp=5)
        with pytest.raises(ValueError, match="timestamp 5 is not after the last one"):
            await run.send("TEXT", "b", timestamp=5)


class Counting(Calculator):
    """Async: sends 1000 numbered copies of each text, counting what it sent; records close."""

    TEXT = Input(str)
    COPIES = Output(str)
    sent = 0
    closed = 0

    async def process(self, ctx: CalculatorContext) -> None:
        await asyncio.sleep(0.01)  # the plain consumer is asleep, waiting: it runs inline in this task
        for i in range(1000):
            await ctx.send(self.COPIES, f"{ctx.value(self.TEXT)}{i}", timestamp=i)
            type(self).sent += 1

    def close(self, ctx: CalculatorContext) -> None:
        type(self).closed += 1


async def test_a_failure_in_a_plain_calculator_fed_by_an_async_one_stops_the_producer_too():
    registry = sample_registry()
    registry.add(Failing, "test")
    registry.add(Counting, "test")
    Failing.closed = Counting.closed = Counting.sent = 0
    graph = await start("""
        input_stream: "TEXT:t"
        output_stream: "OUT:o"
        node { name: "source" calculator: "Counting" input_stream: "TEXT:t" output_stream: "COPIES:c" }
        node { name: "checker" calculator: "Failing" input_stream: "TEXT:c" output_stream: "OUT:o" }
    """, registry)
    run = graph.run()
    await run.send("TEXT", "x")  # the input stays open: only the failure can end the run
    assert (await run.get("OUT")).value == "x0"
    with pytest.raises(CalculatorError) as caught:
        await run.get("OUT")
    await asyncio.wait_for(run.aclose(), 5)
    assert caught.value.node == "checker" and isinstance(caught.value.cause, ValueError)
    assert (Failing.closed, Counting.closed) == (1, 1)
    assert Counting.sent < 1000, "the producer must stop when the node it feeds fails"


async def test_the_runner_feeds_every_input_at_once_so_a_long_one_does_not_wait_for_a_short_one():
    from ovserve.testing import run_calculator
    from tests.framework.sample_calculators import Pair

    right = [str(i) for i in range(200)]  # more than a stream's queue holds
    pairs = (await run_calculator(Pair, {"RIGHT": right, "LEFT": ["a"]}))["PAIR"]
    assert pairs == [("a", "0"), *((None, value) for value in right[1:])]
