"""The front end of the one-call kinds (Whisper, rerank, embeddings, ...): submit a job, await its result, or read
its partial results as they come.

One :class:`CallEngine` per model, over an :class:`~ovserve.engine.client.EngineProcess`: restart, backoff, the
watchdog and failing every waiter when the engine dies come from there. A kind declares how many jobs its engine may
hold (:attr:`~ovserve.engine.kinds.EngineSpec.max_in_flight`); past that, :meth:`CallEngine.submit` refuses at once
with :class:`~ovserve.engine.client.EngineBusyError` (503 with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ovserve.engine.kinds import CallJob
from ovserve.engine.process import EngineError, EngineProcess
from ovserve.engine.protocol import FINISH_ABORT


class CallRequest:
    """One job in a one-call engine: ``await request.result()`` for its result, or ``async for`` its partial results
    (the result comes last). Cancelling the awaiting task, or :meth:`abort`, drops it from the engine's queue, or
    cancels its call where the pipeline can be stopped."""

    def __init__(self, engine: EngineProcess, request_id: int) -> None:
        self._engine = engine
        self.id = request_id
        self._pending: deque[tuple[Any, str | Exception | None]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.finish: str | None = None

    def _push(self, payload: Any, finish: str | Exception | None) -> None:
        self._pending.append((payload, finish))
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def done(self) -> bool:
        return self.finish is not None or any(finish is not None for _, finish in self._pending)

    def abort(self) -> None:
        """Stop the job (no-op once it has ended)."""
        if not self.done:
            self._engine._abort(self.id)

    async def _next(self) -> tuple[Any, str | None]:
        """The next payload and ``None``, or the result and how it ended; raises for a failed job."""
        while not self._pending:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        payload, finish = self._pending.popleft()
        if isinstance(finish, Exception):
            self.finish = "error"
            raise finish
        if finish is not None and finish.startswith("error: "):
            self.finish = "error"
            raise EngineError(finish[len("error: "):])
        if finish is not None:
            self.finish = finish
        return payload, finish

    async def partials(self) -> AsyncIterator[Any]:
        """The job's partial results as they come, then its result (``None`` if it was aborted)."""
        try:
            while self.finish is None:
                payload, finish = await self._next()
                yield None if finish == FINISH_ABORT else payload
        finally:
            self.abort()

    async def result(self) -> Any:
        """The job's result, past any partial ones."""
        last = None
        async for payload in self.partials():
            last = payload
        return last


class CallEngine(EngineProcess):
    """A one-call kind's engine, behind its own process."""

    def submit(self, job: CallJob) -> CallRequest:
        """Queue a job (on the event loop; never blocks); refuses with 503 when the engine is not ready or full."""
        request = CallRequest(self, self._new_id())
        self._submit(request.id, job, request)
        return request

    async def call(self, job: CallJob) -> Any:
        """Run a job and return its result; a cancelled caller cancels the job."""
        return await self.submit(job).result()
