"""Where a calculator's ``process`` runs: on the event loop, or in a thread pool.

A plain (not ``async``) ``process`` runs on the event loop, between other requests' work, unless its
calculator sets ``runs_in_thread = True`` or its node names an executor (MediaPipe's node
``executor: "name"`` with a graph-level ``executor { name: "name" ... }``). Then it runs in a thread
pool: the default one, or the named executor's, with ``num_threads`` from its
``ThreadPoolExecutorOptions``. Its sends are collected in the thread and delivered on the event loop when
it returns. A cancelled run (the client went away) waits for a call already running in a thread to return
before it closes the calculator. A node's ``max_in_flight`` caps how many of its ``process`` calls run at
once, across all requests.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ovserve.framework.textproto import Message

#: The executor of calculators that set ``runs_in_thread`` and name none.
DEFAULT_EXECUTOR = "default"

_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def declared_executors(blocks: list[Message]) -> dict[str, int]:
    """The graph's ``executor {}`` declarations: name → threads (0: the pool's default)."""
    declared = {}
    for block in blocks:
        name = block.first("name")
        threads = 0
        for option in block.all("options"):
            if isinstance(option.value, Message):
                for extension in option.value:
                    if isinstance(extension.value, Message) and (count := extension.value.first("num_threads")):
                        threads = int(count.value)  # type: ignore[arg-type]
        declared[str(name.value) if name is not None else DEFAULT_EXECUTOR] = threads
    return declared


def thread_pool(name: str, threads: int = 0) -> ThreadPoolExecutor:
    """The process-wide pool of executor ``name`` (one per name and size)."""
    key = (name, threads)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            workers = threads or min(32, (os.cpu_count() or 1) + 4)
            pool = _pools[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ovserve-{name}")
        return pool


class _ThreadContext:
    """The calculator's context as seen from a thread: everything reads through, sends are collected."""

    __slots__ = ("_ctx", "sent")

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self.sent: list[tuple[str, Any, Any, int | None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def send(self, port: Any, value: Any, timestamp: int | None = None) -> _Done:
        self.sent.append(("send", port, value, timestamp))
        return _DONE

    def close_output(self, port: Any) -> None:
        self.sent.append(("close", port, None, None))


class _Done:
    """What ``send`` returns in a thread: there is nothing to wait for there."""

    def __await__(self):  # type: ignore[no-untyped-def]
        return iter(())


_DONE = _Done()


def in_thread(process: Callable[[Any], None], pool: ThreadPoolExecutor) -> Callable[[Any], Awaitable[None]]:
    """``process`` as an async function that runs it in ``pool`` and then delivers its sends."""

    async def threaded(ctx: Any) -> None:
        proxy = _ThreadContext(ctx)
        call = asyncio.get_running_loop().run_in_executor(pool, process, proxy)
        try:
            await asyncio.shield(call)
        except asyncio.CancelledError:  # the run is cancelled, but a thread cannot be: let the call end first,
            await asyncio.wait({call})  # so that max_in_flight and close() see it as running until it has
            raise
        for kind, port, value, timestamp in proxy.sent:
            if kind == "close":
                ctx.close_output(port)
            else:
                await ctx.send(port, value, timestamp)

    return threaded


def limited(process: Callable[[Any], Any], is_async: bool, limit: asyncio.Semaphore
            ) -> Callable[[Any], Awaitable[None]]:
    """``process`` run while holding ``limit`` (a node's ``max_in_flight``)."""

    async def guarded(ctx: Any) -> None:
        async with limit:
            if is_async:
                await process(ctx)
            else:
                process(ctx)

    return guarded
