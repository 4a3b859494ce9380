"""One execution of a graph (one request): :class:`GraphRun` wires a :class:`NodeRunner` per node to the graph's
input and output streams, and fails or cancels the whole run as one.

Cancelling a run cancels every node's task; each calculator's ``close`` still runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

from ovserve.framework.errors import CalculatorError, GraphError, RunCancelledError
from ovserve.framework.node_runner import NodeRunner
from ovserve.framework.packet import Packet
from ovserve.framework.queues import InputQueue, OutputPort, Waker
from ovserve.framework.spec import GRAPH_OUTPUT, NodeSpec

if TYPE_CHECKING:
    from ovserve.framework.graph import Graph

class GraphRun:
    """One execution of a graph (one request). Feed inputs, read outputs, or cancel it.

    Use it as an async context manager so that it is always finished::

        async with graph.run() as run:
            await run.send("TEXT", "hello")
            run.close_inputs()
            async for packet in run.outputs("UPPER"):
                ...
    """

    def __init__(self, graph: Graph) -> None:
        spec = graph.spec
        self.spec = spec
        self.graph = graph
        self._input_alias = graph.input_alias
        self._output_alias = graph.output_alias
        capacity = spec.queue_size
        runners = [NodeRunner(self, node, graph.node_sides[i], capacity) for i, node in enumerate(spec.nodes)]
        self._runners = runners
        self._readers: dict[str, InputQueue] = {
            port: InputQueue(port, Waker(), capacity) for port in spec.outputs
        }
        readers = list(self._readers.values())

        def consumer_queues(consumers: tuple[tuple[int, int], ...]) -> list[InputQueue]:
            return [readers[i] if n == GRAPH_OUTPUT else runners[n].queues[i] for n, i in consumers]

        for runner in runners:
            for output in runner.spec.outputs:
                runner.outputs[output.port] = OutputPort(f"node '{runner.spec.name}' output '{output.port}'",
                                                         consumer_queues(output.consumers))
            runner.downstream = [queue for output in runner.outputs.values() for queue in output.consumers]
        self._inputs = {port: OutputPort(f"graph input '{port}'", consumer_queues(consumers))
                        for port, consumers in spec.input_consumers.items()}
        self._error: BaseException | None = None
        self._stopping = False
        self._running = len(runners)
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        if not runners:
            self._finished.set_result(None)
        for runner in runners:
            runner.task = loop.create_task(runner.main())
            runner.task.add_done_callback(self._node_finished)

    # --- feeding ------------------------------------------------------------------------------------

    def send(self, stream: str, value: Any, timestamp: int | None = None) -> Awaitable[None]:
        """Put ``value`` on a graph input stream (by tag or name); await the result for backpressure.

        Timestamps default to 0, 1, 2, ... along the stream."""
        port = self._input(stream)
        if timestamp is None:
            return port.send(value, port.last_ts + 1, False)
        return port.send(value, timestamp, True)

    def close_input(self, stream: str) -> None:
        """No more packets will come on this graph input stream."""
        self._input(stream).close()

    def _input(self, stream: str) -> OutputPort:
        port = self._inputs.get(self._input_alias.get(stream, stream))
        return port if port is not None else self._inputs[self.spec.input_port(stream)]

    def close_inputs(self) -> None:
        """Close every graph input stream."""
        for port in self._inputs.values():
            port.close()

    # --- reading ------------------------------------------------------------------------------------

    async def get(self, stream: str) -> Packet | None:
        """The next packet on a graph output stream, or ``None`` once the stream has ended.

        Packets already produced are delivered first; then a failure of the run is raised as
        :class:`CalculatorError` (naming the node), or :class:`RunCancelledError` after ``cancel``."""
        queue = self._readers.get(self._output_alias.get(stream, stream))
        if queue is None:
            queue = self._readers[self.spec.output_port(stream)]
        while True:
            if queue.items:
                return queue.pop()
            if self._error is not None:
                raise self._error
            if queue.closed:
                return None
            await queue.owner.sleep()

    async def outputs(self, stream: str) -> AsyncIterator[Packet]:
        """Iterate over the packets of a graph output stream until it ends."""
        while (packet := await self.get(stream)) is not None:
            yield packet

    async def collect(self, stream: str) -> list[Any]:
        """Every value of a graph output stream (waits for the stream to end)."""
        return [packet.value async for packet in self.outputs(stream)]

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._finished.done()

    @property
    def error(self) -> BaseException | None:
        return self._error

    async def wait(self) -> None:
        """Wait until every node has finished; raise the run's error if it failed."""
        await asyncio.shield(self._finished)
        if self._error is not None:
            raise self._error

    def cancel(self, reason: str = "the run was cancelled") -> None:
        """Stop everything in the run now (for example, the client went away). ``close`` hooks run."""
        if self._finished.done():
            return
        if self._error is None:
            self._error = RunCancelledError(reason)
        self._stop_all(None)

    async def aclose(self) -> None:
        """Cancel the run if it is still going and wait until all of its tasks have finished."""
        self.cancel()
        await asyncio.shield(self._finished)

    async def __aenter__(self) -> GraphRun:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _fail(self, node: NodeSpec, error: BaseException, failed_in: asyncio.Task[None] | None) -> None:
        """``node`` failed. ``failed_in`` is the node's own task when it failed there (it is finishing
        already: cancelling it would cut its ``close`` short); ``None`` when it failed inline, in a
        producer's task, which must then stop like every other."""
        if self._error is None:
            self._error = error if isinstance(error, GraphError) else CalculatorError(
                node.name, node.calculator.name, error)
            self._stop_all(failed_in)

    def _stop_all(self, spare: asyncio.Task[None] | None) -> None:
        if self._stopping:
            return
        self._stopping = True
        for runner in self._runners:
            if runner.task is not None and runner.task is not spare and not runner.task.done():
                runner.task.cancel()
        for queue in self._readers.values():
            queue.owner.wake()

    def _node_finished(self, task: asyncio.Task[None]) -> None:
        self._running -= 1
        if self._running == 0 and not self._finished.done():
            self._finished.set_result(None)
            for queue in self._readers.values():
                queue.owner.wake()
