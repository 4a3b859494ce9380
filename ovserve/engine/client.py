"""Text generation's front end on an engine process: :class:`EngineClient` submits a prompt's token ids (or a
vision prompt) with its sampling settings, and each :class:`EngineRequest` streams back the tokens of one answer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ovserve.engine.interface import GenerationEngine
from ovserve.engine.llm_core import GenerateJob
from ovserve.engine.process import EngineError, EngineProcess
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.settings import EngineSettings
from ovserve.engine.vision import VisionGenerateJob


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """New tokens of one request (everything that arrived since the last read) and, at the end, how
    it finished: ``stop``, ``length``, ``abort``, or ``error`` with the exception in ``error``
    (:class:`EngineError`, or :class:`~ovserve.errors.ModelNotReadyError` if the engine process died)."""

    token_ids: tuple[int, ...]
    finish: str | None
    error: Exception | None = None
    #: Each new token's log-probability, when the request asked for them.
    logprobs: tuple[float, ...] | None = None



class EngineRequest:
    """One request in the engine. ``async for delta in request`` yields :class:`TokenDelta` until it
    finishes; tokens that arrived meanwhile are merged into one delta. ``abort()`` cancels it."""

    __slots__ = ("_client", "_pending", "_waiter", "finish", "id", "prompt_tokens", "wants_logprobs")

    def __init__(self, client: EngineProcess, request_id: int, prompt_tokens: int, wants_logprobs: bool) -> None:
        self._client = client
        self.id = request_id
        self.prompt_tokens = prompt_tokens
        self.wants_logprobs = wants_logprobs
        self._pending: deque[tuple[Any, str | Exception | None, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.finish: str | None = None

    def _push(self, payload: Any, finish: str | Exception | None) -> None:
        """The engine's payload is the new token ids, or (ids, log-probabilities) for a request that asked."""
        if self.wants_logprobs and payload:
            token_ids, logprobs = payload
        else:
            token_ids, logprobs = payload, None
        self._pending.append((token_ids, finish, logprobs))
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def __aiter__(self) -> EngineRequest:
        return self

    async def __anext__(self) -> TokenDelta:
        while not self._pending:
            if self.finish is not None:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        pending = self._pending
        if len(pending) == 1:
            ids, finish, logprobs = pending.popleft()
            ids = tuple(ids)
            logprobs = tuple(logprobs) if logprobs is not None else None
        else:
            merged: list[int] = []
            merged_logprobs: list[float] | None = None
            finish = None
            while pending:
                more, finish, more_logprobs = pending.popleft()
                merged.extend(more)
                if more_logprobs is not None:
                    merged_logprobs = (merged_logprobs or [])
                    merged_logprobs.extend(more_logprobs)
            ids = tuple(merged)
            logprobs = tuple(merged_logprobs) if merged_logprobs is not None else None
        error = None
        if isinstance(finish, Exception):
            error, finish = finish, "error"
        elif finish is not None and finish.startswith("error: "):
            error, finish = EngineError(finish[len("error: "):]), "error"
        if finish is not None:
            self.finish = finish
        return TokenDelta(ids, finish, error, logprobs)

    @property
    def done(self) -> bool:
        return self.finish is not None or any(f is not None for _, f, _ in self._pending)

    def abort(self) -> None:
        """Stop generating for this request (no-op once it has finished)."""
        if not self.done:
            self._client._abort(self.id)



class EngineClient(EngineProcess, GenerationEngine):
    """The text generation front end: submits prompts to a continuous-batching engine process and streams their
    tokens back (:class:`EngineRequest`)."""

    spec: EngineSettings

    def __init__(self, settings: EngineSettings, **options: Any) -> None:
        super().__init__(settings, **options)

    @property
    def settings(self) -> EngineSettings:
        return self.spec

    @property
    def cache_usage(self) -> float:
        """KV cache in use, percent (reported by the engine)."""
        return self.engine_stats.get("cache_usage", 0.0)

    def metrics(self) -> dict[str, float]:
        return {
            **super().metrics(),
            # The engine's figure is from its last step, while the last sequences still held their blocks.
            "engine_kv_cache_usage_percent": self.cache_usage if self.engine_running else 0.0,
            "engine_batch_invariant": float(self.settings.batch_invariant),
        }

    def submit(self, token_ids: Sequence[int] | np.ndarray, params: SamplingParams) -> EngineRequest:
        """Queue a request; iterate the result for its tokens."""
        request_id = self._new_id()
        ids = np.asarray(token_ids, dtype=np.int64)
        request = EngineRequest(self, request_id, int(ids.size), bool(params.logprobs))
        self._submit(request_id, GenerateJob(ids.tobytes(), params), request)
        return request

    def submit_vision(self, prompt: str, images: Sequence[tuple[bytes, int | None]], params: SamplingParams,
                      prompt_tokens: int) -> EngineRequest:
        """Queue a vision request: the prompt's text with an image tag where each image goes, and each image's
        encoded bytes with the longest side it may keep (:class:`~ovserve.engine.vision.VisionGenerateJob`).
        ``prompt_tokens`` is the caller's count (GenAI does not report it on this pipeline)."""
        request_id = self._new_id()
        request = EngineRequest(self, request_id, prompt_tokens, bool(params.logprobs))
        job = VisionGenerateJob(prompt, tuple(data for data, _ in images), tuple(side for _, side in images), params)
        self._submit(request_id, job, request)
        return request
