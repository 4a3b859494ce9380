"""Running graphs: :class:`Graph` (resources built once) and :class:`GraphRun` (one per request).

Every node of a run is an asyncio task that takes packets from bounded input queues and calls its
calculator. A producer that fills a consumer's queue waits until the consumer has drained it to half
(backpressure), so a slow reader bounds every queue upstream of it. Cancelling a run cancels every
task; each calculator's ``close`` still runs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from ovserve.framework.calculator import Calculator, CalculatorContext, Resource, ResourceContext
from ovserve.framework.errors import CalculatorError, GraphConfigError, GraphError, Problem, RunCancelledError
from ovserve.framework.executors import in_thread, limited, thread_pool
from ovserve.framework.metrics import Histogram
from ovserve.framework.packet import Packet
from ovserve.framework.spec import GRAPH_OUTPUT, GraphSpec, NodeSpec, ResourceSpec

_new_packet = tuple.__new__  # Packet(value, ts) without NamedTuple's Python-level __new__


class _Ready:
    """An awaitable that is already complete (returned by ``send`` when there is room)."""

    __slots__ = ()

    def __await__(self):  # type: ignore[no-untyped-def]
        return iter(())


READY = _Ready()


class _Waker:
    """Something that sleeps until one of its input queues changes: a node, or a run's reader."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def deliver(self) -> None:
        """A packet was queued for this consumer."""
        self.wake()

    async def sleep(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter


class InputQueue:
    """The bounded queue in front of one input port (or one graph output)."""

    __slots__ = ("abandoned", "back_edge", "capacity", "closed", "items", "last_ts", "low_water", "owner",
                 "port", "space_waiter")

    def __init__(self, port: str, owner: _Waker, capacity: int, back_edge: bool = False) -> None:
        self.port = port
        self.owner = owner
        self.items: deque[Packet] = deque()
        self.capacity = capacity
        self.low_water = capacity // 2
        self.closed = False
        self.abandoned = False
        self.back_edge = back_edge
        self.last_ts = -1
        self.space_waiter: asyncio.Future[None] | None = None

    def pop(self) -> Packet:
        packet = self.items.popleft()
        if self.space_waiter is not None and len(self.items) <= self.low_water:
            self.wake_producer()
        return packet

    def wake_producer(self) -> None:
        waiter, self.space_waiter = self.space_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        self.owner.wake()

    def abandon(self) -> None:
        """The consumer is gone: drop what is queued and let the producer go on."""
        self.abandoned = True
        self.items.clear()
        self.wake_producer()

    async def wait_space(self) -> None:
        while len(self.items) >= self.capacity and not self.abandoned:
            self.space_waiter = asyncio.get_running_loop().create_future()
            await self.space_waiter


class OutputPort:
    """One output port of one node in one run (or one graph input): fans packets out to consumers."""

    __slots__ = ("closed", "consumers", "last_ts", "name")

    def __init__(self, name: str, consumers: list[InputQueue]) -> None:
        self.name = name
        self.consumers = consumers
        self.last_ts = -1
        self.closed = False

    def send(self, value: Any, timestamp: int, explicit: bool) -> Awaitable[None]:
        last = self.last_ts
        if timestamp <= last:
            if explicit:
                raise ValueError(f"{self.name}: timestamp {timestamp} is not after the last one ({last}); "
                                 f"timestamps must increase along a stream")
            timestamp = last + 1
        if self.closed:
            raise ValueError(f"{self.name}: the stream is closed; nothing more can be sent")
        self.last_ts = timestamp
        packet = _new_packet(Packet, (value, timestamp))
        full = False
        for queue in self.consumers:
            if queue.abandoned:
                continue
            items = queue.items
            items.append(packet)
            queue.last_ts = timestamp
            owner = queue.owner
            if owner.waiter is not None:
                owner.deliver()
            if len(items) >= queue.capacity:
                full = True
        return _Room(self.consumers) if full else READY

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for queue in self.consumers:
                queue.close()


class _Room:
    """Awaitable: waits until every consumer has room. A plain object, not a coroutine, so that a sync
    ``process`` may drop it without a "never awaited" warning."""

    __slots__ = ("consumers",)

    def __init__(self, consumers: list[InputQueue]) -> None:
        self.consumers = consumers

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._wait().__await__()

    async def _wait(self) -> None:
        for queue in self.consumers:
            await queue.wait_space()


class _NodeRunner(_Waker):
    """Runs one calculator for one run."""

    __slots__ = ("ctx", "downstream", "draining", "groups", "inline_process", "outputs", "queues", "run", "spec",
                 "task")

    def __init__(self, run: GraphRun, spec: NodeSpec, side: Mapping[str, Any], capacity: int) -> None:
        super().__init__()
        self.run = run
        self.spec = spec
        self.queues = [InputQueue(i.port, self, capacity, i.back_edge) for i in spec.inputs]
        self.groups = [[self.queues[i] for i in group] for group in spec.sync_sets]
        self.outputs: dict[str, OutputPort] = {}
        self.downstream: list[InputQueue] = []
        self.ctx = CalculatorContext(spec.name, spec.options, side, self.outputs, spec.base_path)
        self.task: asyncio.Task[None] | None = None
        #: A sync ``process`` that producers may call directly while this node sleeps (set after open).
        self.inline_process: Any = None
        self.draining = False

    def deliver(self) -> None:
        """A packet was queued here. If the node sleeps waiting for input and its ``process`` is plain
        (not async), run it right here, in the producer's task: the packet goes through without a task
        switch, and in the same order and timestamp sync as the node's own loop would give."""
        if self.inline_process is None or self.draining:
            self.wake()
            return
        self.draining = True
        try:
            while not self._downstream_full() and self._take():
                self.inline_process(self.ctx)
        except BaseException as error:  # the failure is this node's; the producer's task stops too
            self.inline_process = None  # and nothing more runs through the failed calculator
            self.run._fail(self.spec, error, failed_in=None)
        finally:
            self.draining = False
        if any(q.items or q.closed for q in self.queues):
            self.wake()  # what remains (backpressure, end of input) is for the node's own loop

    def _downstream_full(self) -> bool:
        for queue in self.downstream:  # noqa: SIM110 - per packet: a plain loop beats any() on a generator
            if len(queue.items) >= queue.capacity:
                return True
        return False

    def _done(self) -> bool:
        for queue in self.queues:  # noqa: SIM110 - per packet: a plain loop beats all() on a generator
            if not queue.back_edge and (queue.items or not queue.closed):
                return False
        return True

    def _take(self) -> bool:
        """Fill ``ctx.inputs`` with the earliest ready input set; False if none is ready."""
        ctx = self.ctx
        if len(self.queues) == 1:
            queue = self.queues[0]
            if not queue.items:
                return False
            packet = queue.pop()
            ctx.inputs = {queue.port: packet}
            ctx.timestamp = packet.timestamp
            return True
        best_ts = -1
        best: list[InputQueue] | None = None
        for group in self.groups:
            ts = -1
            for queue in group:
                if queue.items:
                    head = queue.items[0].timestamp
                    if ts < 0 or head < ts:
                        ts = head
            if ts < 0 or (best is not None and ts >= best_ts):
                continue
            for queue in group:
                if not (queue.back_edge or queue.closed or queue.last_ts >= ts):
                    break
            else:
                best, best_ts = group, ts
        if best is None:
            return False
        ctx.inputs = {q.port: q.pop() for q in best if q.items and q.items[0].timestamp == best_ts}
        ctx.timestamp = best_ts
        return True

    async def _room(self) -> None:
        for queue in self.downstream:
            if len(queue.items) >= queue.capacity:
                await queue.wait_space()

    async def main(self) -> None:
        spec = self.spec
        ctx = self.ctx
        calculator: Calculator | None = None
        opened = False
        try:
            calculator = spec.calculator()
            result = calculator.open(ctx)
            if result is not None:
                await result
            opened = True
            process = calculator.process
            is_async = spec.process_is_async
            if spec.executor and not is_async:
                process, is_async = in_thread(process, thread_pool(spec.executor, spec.executor_threads)), True
            limit = self.run.graph.in_flight_limits.get(spec.name) if spec.max_in_flight else None
            if limit is not None:
                process, is_async = limited(process, is_async, limit), True
            if not is_async and self.queues:
                self.inline_process = process
            if not self.queues:
                if is_async:
                    await process(ctx)  # type: ignore[misc]
                else:
                    process(ctx)
            elif len(self.queues) == 1 and not self.queues[0].back_edge:
                await self._single_input_loop(process, is_async)
            else:
                while not self._done():
                    if self._take():
                        if is_async:
                            await process(ctx)  # type: ignore[misc]
                        else:
                            process(ctx)
                        await self._room()
                    else:
                        await self.sleep()
            for output in self.outputs.values():
                output.close()
        except asyncio.CancelledError:
            if self.run._error is None:  # cancelled by something other than the run itself
                self.run._fail(spec, RunCancelledError(f"node '{spec.name}' was cancelled"), self.task)
            raise
        except BaseException as error:  # every failure of a calculator is reported to the run
            self.run._fail(spec, error, self.task)
        finally:
            self.inline_process = None
            for queue in self.queues:
                queue.abandon()
            if opened and calculator is not None:
                try:
                    result = calculator.close(ctx)
                    if result is not None:
                        await _despite_cancellation(result)
                except asyncio.CancelledError:
                    raise
                except BaseException as error:  # a failing close() fails the run too
                    self.run._fail(spec, error, self.task)

    async def _single_input_loop(self, process: Any, is_async: bool) -> None:
        ctx = self.ctx
        queue = self.queues[0]
        items = queue.items
        port = queue.port
        consumers = self.downstream
        while True:
            if items:
                packet = items.popleft()
                if queue.space_waiter is not None and len(items) <= queue.low_water:
                    queue.wake_producer()
                ctx.inputs = {port: packet}
                ctx.timestamp = packet.timestamp
                if is_async:
                    await process(ctx)
                else:
                    process(ctx)
                for consumer in consumers:
                    if len(consumer.items) >= consumer.capacity:
                        await consumer.wait_space()
            elif queue.closed:
                return
            else:
                await self.sleep()


async def _despite_cancellation(awaitable: Awaitable[None]) -> None:
    """Await ``awaitable`` to the end even if this task is cancelled meanwhile; then re-raise the cancel.

    ``close`` hooks must complete: an engine request has to be aborted even when the client is gone."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


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
        runners = [_NodeRunner(self, node, graph.node_sides[i], capacity) for i, node in enumerate(spec.nodes)]
        self._runners = runners
        self._readers: dict[str, InputQueue] = {
            port: InputQueue(port, _Waker(), capacity) for port in spec.outputs
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


class ResourceError(GraphError):
    """A resource failed to open at graph load; names the node."""

    def __init__(self, node: str, resource: str, cause: BaseException, location: object = None) -> None:
        self.node = node
        self.cause = cause
        where = f"{location}: " if location is not None else ""
        super().__init__(f"{where}resource node '{node}' ({resource}) failed to open: {type(cause).__name__}: {cause}")


class Graph:
    """A loaded graph: resources built and shared, ready to start runs (:meth:`run`).

    Create with ``await Graph.start(spec)``; stop with ``await graph.stop()``.
    """

    def __init__(self, spec: GraphSpec, side_packets: dict[str, Any], resources: list[Resource],
                 kept: list[_KeptResource] | None = None) -> None:
        self.spec = spec
        #: Every side packet by name: the host's and those the resources provided.
        self.side_packets = MappingProxyType(side_packets)
        self.resources = resources
        #: Each resource with its identity, side outputs and how many graphs hold it (a successor may take it
        #: over: the last graph holding it closes it).
        self._kept = kept if kept is not None else [_held(resource) for resource in resources]
        #: Whether :meth:`stop` ran (a stopped graph's resources are not taken over).
        self._stopped = False
        #: The resource nodes taken over from the graph this one replaced (:meth:`start` with ``reuse``).
        self.taken_over: list[str] = []
        #: Graph streams by stream name or port key → port key.
        self.input_alias = {**{name: port for port, name in spec.inputs.items()}, **{p: p for p in spec.inputs}}
        self.output_alias = {**{name: port for port, name in spec.outputs.items()}, **{p: p for p in spec.outputs}}
        self.node_sides = [
            MappingProxyType({port: side_packets[name] for port, name in node.side_inputs.items()})
            for node in spec.nodes
        ]
        #: The nodes with a ``max_in_flight``: how many of their ``process`` calls may run at once.
        self.in_flight_limits = {node.name: asyncio.Semaphore(node.max_in_flight) for node in spec.nodes
                                 if node.max_in_flight}

    @classmethod
    async def start(cls, spec: GraphSpec, side_packets: Mapping[str, Any] | None = None,
                    reuse: Graph | None = None) -> Graph:
        """Build the graph's resources in dependency order. ``side_packets`` provides the graph's
        ``input_side_packet``s, by tag or by name.

        ``reuse`` is the graph this one replaces (a reload): a resource of the same calculator, options, folder
        and side inputs is taken over from it instead of opened again (an engine keeps its loaded weights).
        Both graphs hold it then, and whichever stops last closes it, so ``reuse`` keeps serving the runs it
        has. If this start fails, nothing is taken over."""
        values = _given_side_packets(spec, side_packets)
        reusable = {kept.key: kept for kept in reuse._kept} if reuse is not None and not reuse._stopped else {}
        opened: list[Resource] = []
        resources: list[Resource] = []
        kept_list: list[_KeptResource] = []
        try:
            for resource_spec in spec.resources:
                side = {port: values[name] for port, name in resource_spec.side_inputs.items()}
                key = _resource_identity(resource_spec, side)
                kept = reusable.pop(key, None)
                if kept is None:
                    kept = _KeptResource(key, *await _open_resource(resource_spec, side))
                    opened.append(kept.resource)
                resources.append(kept.resource)
                kept_list.append(kept)
                for port, name in resource_spec.side_outputs.items():
                    values[name] = kept.outputs[port]
        except BaseException:
            await _close_all(opened)
            raise
        for kept in kept_list:
            kept.holders += 1
        graph = cls(spec, values, resources, kept_list)
        graph.taken_over = [spec.name for spec, kept in zip(spec.resources, kept_list, strict=True)
                            if kept.resource not in opened]
        return graph

    def reused_from_predecessor(self) -> list[str]:
        """The resource nodes this graph took over from the graph it replaced (for logs)."""
        return list(self.taken_over)

    def run(self) -> GraphRun:
        """Start a run: fresh calculators, fresh queues, shared resources. Call from the event loop."""
        return GraphRun(self)

    def is_ready(self) -> bool:
        """Whether every resource reports ready."""
        return all(resource.is_ready() for resource in self.resources)

    def resource_metrics(self) -> list[tuple[str, dict[str, float]]]:
        """Each resource's gauges with its node name."""
        return [(spec.name, resource.metrics()) for spec, resource in zip(self.spec.resources, self.resources,
                                                                         strict=False)]

    def resource_histograms(self) -> list[tuple[str, dict[str, Histogram]]]:
        """Each resource's distributions with its node name."""
        return [(spec.name, resource.histograms()) for spec, resource in zip(self.spec.resources, self.resources,
                                                                            strict=False)]

    async def stop(self) -> None:
        """Close the resources, last opened first: those another graph still holds stay open."""
        if self._stopped:
            return
        self._stopped = True
        self.resources = []
        for kept in self._kept:
            kept.holders -= 1
        await _close_all([kept.resource for kept in self._kept if kept.holders == 0])


class _KeptResource:
    """An opened resource, what identifies it for reuse, the side packets it provided, and how many graphs
    hold it (shared by the graphs that hold it)."""

    __slots__ = ("holders", "key", "outputs", "resource")

    def __init__(self, key: tuple[Any, ...], resource: Resource, outputs: dict[str, Any]) -> None:
        self.key = key
        self.resource = resource
        self.outputs = outputs
        self.holders = 0


def _held(resource: Resource) -> _KeptResource:
    """A resource held by one graph and offered to no successor (a graph built without :meth:`Graph.start`)."""
    kept = _KeptResource((id(resource),), resource, {})
    kept.holders = 1
    return kept


def _given_side_packets(spec: GraphSpec, side_packets: Mapping[str, Any] | None) -> dict[str, Any]:
    """The graph's input side packets by name, from what the host gave by tag or by name."""
    given = dict(side_packets or {})
    values: dict[str, Any] = {}
    missing = []
    for port, name in spec.input_side_packets.items():
        if port in given:
            values[name] = given[port]
        elif name in given:
            values[name] = given[name]
        else:
            missing.append(f"{port}:{name}" if port else name)
    if missing:
        raise GraphConfigError(Problem(f"the graph needs input side packets that were not given: "
                                       f"{', '.join(missing)}"))
    return values


def _resource_identity(spec: ResourceSpec, side: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two resource nodes interchangeable: the class, its options, the folder relative paths
    resolve against, and the very objects it reads as side inputs."""
    options = spec.options.model_dump_json() if isinstance(spec.options, BaseModel) else repr(spec.options)
    return (spec.resource, options, str(spec.base_path.resolve()),
            tuple(sorted((port, id(value)) for port, value in side.items())))


async def _open_resource(spec: ResourceSpec, side: Mapping[str, Any]) -> tuple[Resource, dict[str, Any]]:
    """Open one resource node; a failure names the node."""
    try:
        resource = spec.resource()
        ctx = ResourceContext(spec.name, spec.options, MappingProxyType(dict(side)), spec.base_path)
        result = resource.open(ctx)
        if result is not None:
            await result
    except Exception as error:
        raise ResourceError(spec.name, spec.resource.name, error, spec.location) from error
    try:
        for port in spec.side_outputs:
            if port not in ctx.outputs:
                raise RuntimeError(f"open() did not set side output '{port}'")
    except Exception as error:
        await _close_all([resource])
        raise ResourceError(spec.name, spec.resource.name, error, spec.location) from error
    return resource, ctx.outputs


async def _close_all(resources: list[Resource]) -> None:
    errors = []
    for resource in reversed(resources):
        try:
            result = resource.close()
            if result is not None:
                await result
        except Exception as error:  # close every resource, then report the first failure
            errors.append(error)
    if errors:
        raise errors[0]
