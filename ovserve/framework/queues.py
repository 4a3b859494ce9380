"""The queues between nodes: a bounded :class:`InputQueue` per node input and an :class:`OutputPort` that
fans a packet out to every consumer's queue.

A producer that fills a consumer's queue waits until the consumer has drained it to half (backpressure), so a slow
reader bounds every queue upstream of it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Any

from ovserve.framework.packet import Packet

_new_packet = tuple.__new__  # Packet(value, ts) without NamedTuple's Python-level __new__

class _Ready:
    """An awaitable that is already complete (returned by ``send`` when there is room)."""

    __slots__ = ()

    def __await__(self):  # type: ignore[no-untyped-def]
        return iter(())


READY = _Ready()


class Waker:
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

    def __init__(self, port: str, owner: Waker, capacity: int, back_edge: bool = False) -> None:
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

