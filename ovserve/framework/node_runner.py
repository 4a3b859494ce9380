"""The task that runs one calculator for one graph run: it takes input sets from the node's queues in timestamp
order, calls ``process`` (inline in the producer's task where it can), waits for room downstream, and always calls
``close``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from ovserve.framework.calculator import Calculator, CalculatorContext
from ovserve.framework.errors import RunCancelledError
from ovserve.framework.executors import in_thread, limited, thread_pool
from ovserve.framework.queues import InputQueue, OutputPort, Waker
from ovserve.framework.spec import NodeSpec

if TYPE_CHECKING:
    from ovserve.framework.graph_run import GraphRun

class NodeRunner(Waker):
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
